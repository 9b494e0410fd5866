%%% @doc The process of one producer client. It owns the native client, receives its
%%% delivery reports (one message per batch of reports, from the client's pump thread)
%%% and calls the user's callback for each, answers `produce_sync' waiters, logs
%%% librdkafka's log lines and errors, and on stop flushes then purges: every message
%%% accepted before the stop still gets exactly one report.
-module(erlkaf_producer_server).
-behaviour(gen_server).

-include("erlkaf.hrl").

-export([start_link/2, child_spec/2, sync/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2, format_status/1]).

-record(state, {
    client_id :: atom(),
    res :: reference(),
    callback :: undefined | {module, module(), 2 | 3} | {function, fun()},
    opts :: map(),
    last_stats = #{} :: map() | binary(),
    stopped = false :: boolean()
}).

%% @doc A child spec for `erlkaf_clients_sup'. The shutdown time covers the flush.
-spec child_spec(atom(), {erlkaf_config:props(), erlkaf_config:erlkaf_opts()}) -> supervisor:child_spec().
child_spec(ClientId, {Props, Opts}) ->
    #{
        id => ClientId,
        %% Hidden in a fun: supervisor reports print the start arguments, and Props may
        %% hold sasl.password and other secrets.
        start => {?MODULE, start_link, [ClientId, erlkaf_config:hide({Props, Opts})]},
        restart => transient,
        shutdown => maps:get(stop_flush_timeout_ms, Opts) + 15000,
        type => worker
    }.

-spec start_link(atom(), {erlkaf_config:props(), erlkaf_config:erlkaf_opts()} | fun(() -> term())) -> gen_server:start_ret().
start_link(ClientId, Config) ->
    gen_server:start_link(?MODULE, {ClientId, Config}, []).

%% @doc Returns once every report received so far has been handed to the callback.
-spec sync(pid()) -> ok.
sync(Pid) ->
    gen_server:call(Pid, sync, infinity).

init({ClientId, Hidden}) ->
    {Props, Opts} = erlkaf_config:reveal(Hidden),
    _ = erlkaf_telemetry:refresh(),
    process_flag(trap_exit, true),
    Callback = callback(maps:get(delivery_report_callback, Opts)),
    %% all: every report to the callback; errors: failures only (with their MsgRef);
    %% none: no callback, failures are logged (no MsgRef kept per message).
    Mode = case {Callback, maps:get(delivery_report_only_error, Opts)} of
        {undefined, _} -> none;
        {_, true} -> errors;
        {_, false} -> all
    end,
    Name = atom_to_binary(ClientId, utf8),
    case erlkaf_nif:producer_new(Name, [{<<"client.id">>, Name} || not has_client_id(Props)] ++ Props, self(), Mode) of
        {ok, Res} ->
            %% The produce path reads only these (a small term to copy out of ETS per call).
            Hot = maps:with([queue_buffering_overflow_strategy, queue_buffering_overflow_timeout_ms, dropped], Opts),
            case erlkaf_registry:register(ClientId, producer, Res, Hot) of
                ok ->
                    {ok, #state{client_id = ClientId, res = Res, callback = Callback, opts = Opts}};
                {error, Reason} ->
                    erlkaf_nif:producer_stop(Res, 0),
                    {stop, Reason}
            end;
        {error, Reason} ->
            {stop, Reason}
    end.

has_client_id(Props) ->
    lists:keymember(<<"client.id">>, 1, Props).

callback(undefined) ->
    undefined;
callback(F) when is_function(F) ->
    {function, F};
callback(M) when is_atom(M) ->
    _ = code:ensure_loaded(M),
    case erlang:function_exported(M, delivery_report, 3) of
        true -> {module, M, 3};
        false -> {module, M, 2}
    end.

handle_call(sync, _From, S) ->
    {reply, ok, S};
handle_call(get_stats, _From, #state{last_stats = Stats} = S) ->
    {reply, {ok, Stats}, S};
handle_call(_Other, _From, S) ->
    {reply, {error, unknown_call}, S}.

handle_cast(_Msg, S) ->
    {noreply, S}.

handle_info({erlkaf_dr, Reports}, S) ->
    reports(Reports, S),
    {noreply, S};
handle_info({erlkaf_event, {error, Code, true, Reason} = Event}, S) ->
    %% A fatal error (e.g. fenced by a newer producer with the same transactional id):
    %% librdkafka refuses everything from now on. The callback and the log have it; the
    %% client stops (and is not restarted: the same configuration would be fenced again).
    {stop, {shutdown, {fatal_error, Code, Reason}}, event(Event, S)};
handle_info({erlkaf_event, Event}, S) ->
    {noreply, event(Event, S)};
handle_info({erlkaf_stopped, _Report}, S) ->
    {noreply, S#state{stopped = true}};
handle_info({'EXIT', _From, Reason}, S) ->
    {stop, Reason, S};
handle_info(_Other, S) ->
    {noreply, S}.

terminate(_Reason, #state{client_id = ClientId, res = Res, opts = Opts} = S) ->
    erlkaf_registry:unregister(ClientId),
    Timeout = maps:get(stop_flush_timeout_ms, Opts),
    case S#state.stopped orelse erlkaf_nif:producer_stop(Res, Timeout) =/= ok of
        true -> ok;
        false -> drain_until_stopped(S, Timeout + 12000)
    end.

%% Reports keep coming while the native client flushes and purges: hand each to the
%% callback until the client says it stopped.
drain_until_stopped(S, Timeout) ->
    receive
        {erlkaf_dr, Reports} ->
            reports(Reports, S),
            drain_until_stopped(S, Timeout);
        {erlkaf_event, Event} ->
            drain_until_stopped(event(Event, S), Timeout);
        {erlkaf_stopped, Report} ->
            case Report of
                #{flushed := true} -> ok;
                #{purged := N} ->
                    logger:warning("erlkaf producer ~p stopped before delivering ~p messages: "
                                   "each got an error report", [S#state.client_id, N],
                                   #{client_id => S#state.client_id})
            end
    after Timeout ->
        logger:error("erlkaf producer ~p did not stop in time", [S#state.client_id],
                     #{client_id => S#state.client_id})
    end.

%% Redacts nothing secret ever reaches this state (props are not kept), but crash
%% reports should not carry the report backlog either.
format_status(Status) ->
    maps:map(fun(messages, Msgs) -> [M || M <- Msgs, element(1, M) =/= erlkaf_dr];
                (_, V) -> V end, Status).

reports(Reports, S) ->
    case erlkaf_telemetry:enabled() of
        true ->
            Errors = length([x || {_, {error, _}, _} <- Reports]),
            erlkaf_telemetry:execute([erlkaf, delivery], #{ok => length(Reports) - Errors, error => Errors},
                                     #{client_id => S#state.client_id});
        false ->
            ok
    end,
    reports1(Reports, S).

reports1([], _S) ->
    ok;
reports1([{erlkaf_sync, Alias, Result} | Rest], S) ->
    Alias ! {erlkaf_sync, Alias, Result},
    reports1(Rest, S);
reports1([{MsgRef, Status, Msg} | Rest], #state{callback = Callback} = S) ->
    report(Callback, MsgRef, Status, Msg, S),
    reports1(Rest, S).

report(undefined, _Ref, {error, Reason}, #erlkaf_msg{topic = T, partition = P}, S) ->
    logger:warning("erlkaf producer ~p: delivery to ~ts/~p failed: ~p",
                   [S#state.client_id, T, P, Reason], #{client_id => S#state.client_id});
report(undefined, _Ref, ok, _Msg, _S) ->
    ok;
report(Callback, Ref, Status, Msg, S) ->
    try
        case Callback of
            {module, M, 3} -> M:delivery_report(Ref, Status, Msg);
            {module, M, 2} -> M:delivery_report(Status, Msg);
            {function, F} when is_function(F, 3) -> F(Ref, Status, Msg);
            {function, F} when is_function(F, 2) -> F(Status, Msg)
        end
    catch
        Class:Reason:Stack ->
            logger:error("erlkaf producer ~p: delivery report callback failed: ~p:~p ~p",
                         [S#state.client_id, Class, Reason, Stack],
                         #{client_id => S#state.client_id})
    end.

event(Event, #state{client_id = ClientId, opts = Opts} = S) ->
    case erlkaf_events:handle(Event, ClientId, maps:with([error_callback, stats_callback], Opts)) of
        {stats, Stats} -> S#state{last_stats = Stats};
        {oauth_refresh, Config} ->
            erlkaf_events:oauth_refresh(S#state.res, Config, maps:get(oauthbearer_token_refresh_callback, Opts), ClientId),
            S;
        ok -> S
    end.
