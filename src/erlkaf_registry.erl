%%% @doc The client registry: `ClientId -> native resource, process, options'.
%%%
%%% An ETS table is the record (atomic `insert_new' decides who owns an id); it is
%%% mirrored as one map `ClientId => Entry' in `persistent_term', which the produce path
%%% reads: a lookup there copies nothing (an ETS lookup copies the entry to the caller's
%%% heap, a sixth of the cost of a `produce/4'), and its key is an atom (a tuple key is
%%% hashed on every lookup: twice the time). Clients are created and stopped rarely,
%%% which is what `persistent_term' is made for; the mirror is rebuilt from the table
%%% under a lock, so concurrent changes cannot undo each other.
-module(erlkaf_registry).

-export([create_table/0, register/4, unregister/1, lookup/1, clients/0]).

-define(TABLE, erlkaf_clients).
-define(MIRROR, erlkaf_registry).

%% @doc Creates the table (owned by the calling process: `erlkaf_sup').
-spec create_table() -> ok.
create_table() ->
    %% A mirror left by clients killed with an earlier incarnation of the application.
    _ = persistent_term:erase(?MIRROR),
    ?TABLE = ets:new(?TABLE, [named_table, public, set, {read_concurrency, true}]),
    ok.

%% @doc Registers a client; `{error, already_exists}' when a live process holds the id.
%% An entry left by a killed process (its terminate never ran) is replaced: that is the
%% supervisor restarting the client.
-spec register(term(), producer | consumer, reference(), map()) -> ok | {error, already_exists}.
register(ClientId, Type, Resource, Info) ->
    Entry = {ClientId, Type, Resource, self(), Info},
    case ets:insert_new(?TABLE, Entry) of
        true ->
            mirror();
        false ->
            case ets:lookup(?TABLE, ClientId) of
                [{_, _, _, Old, _}] when Old =/= self() ->
                    case is_process_alive(Old) of
                        true -> {error, already_exists};
                        false -> ets:insert(?TABLE, Entry), mirror()
                    end;
                _ ->
                    {error, already_exists}
            end
    end.

-spec unregister(term()) -> ok.
unregister(ClientId) ->
    ets:delete(?TABLE, ClientId),
    mirror().

%% @doc The client's type, resource, process and options.
-spec lookup(term()) -> {ok, producer | consumer, reference(), pid(), map()} | {error, undefined_client}.
lookup(ClientId) ->
    case persistent_term:get(?MIRROR, #{}) of
        #{ClientId := {_, Type, Res, Pid, Info}} -> {ok, Type, Res, Pid, Info};
        _ -> {error, undefined_client}
    end.

%% The table as a map in `persistent_term' (the lock orders concurrent rebuilds: each
%% reads the table after the previous one wrote the mirror).
mirror() ->
    global:trans({?MODULE, self()}, fun() ->
        Map = maps:from_list([{Id, E} || {Id, _, _, _, _} = E <- ets:tab2list(?TABLE)]),
        case map_size(Map) of
            0 -> _ = persistent_term:erase(?MIRROR);
            _ -> persistent_term:put(?MIRROR, Map)
        end,
        ok
    end, [node()]).

%% @doc All registered client ids.
-spec clients() -> [term()].
clients() ->
    try ets:select(?TABLE, [{{'$1', '_', '_', '_', '_'}, [], ['$1']}])
    catch error:badarg -> []
    end.
