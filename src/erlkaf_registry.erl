%%% @doc The client registry: `ClientId -> native resource, process, options'.
%%%
%%% An ETS table is the record (atomic `insert_new' decides who owns an id); each entry
%%% is mirrored in `persistent_term', which the produce path reads: a lookup there copies
%%% nothing (an ETS lookup copies the entry to the caller's heap, a sixth of the cost of a
%%% `produce/4'). Clients are created and stopped rarely, which is what `persistent_term'
%%% is made for.
-module(erlkaf_registry).

-export([create_table/0, register/4, unregister/1, lookup/1, clients/0]).

-define(TABLE, erlkaf_clients).
-define(KEY(ClientId), {?MODULE, ClientId}).

%% @doc Creates the table (owned by the calling process: `erlkaf_sup').
-spec create_table() -> ok.
create_table() ->
    %% Mirrors left by clients killed with an earlier incarnation of the application.
    _ = [persistent_term:erase(K) || {?KEY(_) = K, _} <- persistent_term:get()],
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
            persistent_term:put(?KEY(ClientId), Entry);
        false ->
            case ets:lookup(?TABLE, ClientId) of
                [{_, _, _, Old, _}] when Old =/= self() ->
                    case is_process_alive(Old) of
                        true -> {error, already_exists};
                        false -> ets:insert(?TABLE, Entry), persistent_term:put(?KEY(ClientId), Entry)
                    end;
                _ ->
                    {error, already_exists}
            end
    end.

-spec unregister(term()) -> ok.
unregister(ClientId) ->
    ets:delete(?TABLE, ClientId),
    _ = persistent_term:erase(?KEY(ClientId)),
    ok.

%% @doc The client's type, resource, process and options.
-spec lookup(term()) -> {ok, producer | consumer, reference(), pid(), map()} | {error, undefined_client}.
lookup(ClientId) ->
    case persistent_term:get(?KEY(ClientId), undefined) of
        {_, Type, Res, Pid, Info} -> {ok, Type, Res, Pid, Info};
        undefined -> {error, undefined_client}
    end.

%% @doc All registered client ids.
-spec clients() -> [term()].
clients() ->
    try ets:select(?TABLE, [{{'$1', '_', '_', '_', '_'}, [], ['$1']}])
    catch error:badarg -> []
    end.
