%%% @doc The process of one producer client. It owns the native client, takes its
%%% delivery reports (with a callback: the client's pump thread tells it of each round,
%%% and it builds the round's reports on its own heap, a slice per NIF call; without: one
%%% message per batch of failures) and calls the user's callback for each, answers
%%% `produce_sync' waiters, logs librdkafka's log lines and errors, and on stop flushes
%%% then purges: every message accepted before the stop still gets exactly one report.
-module(erlkaf_producer_server).
-behaviour(gen_server).

-include("erlkaf.hrl").

-export([start_link/2, child_spec/2, sync/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2, format_status/1]).

-record(state, {
    client_id :: atom(),
    res :: reference(),
    callback :: undefined | {function, fun()},
    opts :: map(),
    last_stats = #{} :: map() | binary(),
    stopped = false :: boolean(),
    %% local_disk_queue only: the spill, the flag producers read (1: not empty), and
    %% whether a drain is scheduled.
    spill :: undefined | erlkaf_spill:spill(),
    spilling :: undefined | atomics:atomics_ref(),
    draining = false :: boolean()
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
    %% Reports the client sends (failures without a callback; rounds it took back) arrive
    %% in bursts of large messages: kept off the heap until received, a backlog is not
    %% copied by every garbage collection of this process (measured when every report
    %% came that way: a tenth more reports per second through a callback).
    process_flag(message_queue_data, off_heap),
    %% Reports handled as they arrive, however many processes produce (see the option).
    process_flag(priority, maps:get(delivery_report_priority, Opts)),
    Callback = callback(maps:get(delivery_report_callback, Opts)),
    %% all: every report to the callback; values: the same without MsgRefs (a callback of
    %% arity 2 has no use for them, and keeping one per message costs a copy each way);
    %% errors: failures only (with their MsgRef); none: no callback, failures are logged
    %% (no MsgRef kept per message).
    Mode = case {Callback, maps:get(delivery_report_only_error, Opts)} of
        {undefined, _} -> none;
        {_, true} -> errors;
        {{function, F}, false} when is_function(F, 2) -> values;
        {_, false} -> all
    end,
    Name = atom_to_binary(ClientId, utf8),
    case open_spill(ClientId, Opts) of
        {ok, Spill, Spilling} -> start(ClientId, Props, Opts, Callback, Mode, Name, Spill, Spilling);
        {error, Reason} -> {stop, Reason}
    end.

start(ClientId, Props, Opts, Callback, Mode, Name, Spill, Spilling) ->
    case erlkaf_nif:producer_new(Name, [{<<"client.id">>, Name} || not has_client_id(Props)] ++ Props, self(), Mode) of
        {ok, Res} ->
            %% The produce path reads only these (a small term to copy out of ETS per call).
            Hot = (maps:with([queue_buffering_overflow_strategy, queue_buffering_overflow_timeout_ms, dropped], Opts))#{
                      spilling => Spilling, server => self()},
            case erlkaf_registry:register(ClientId, producer, Res, Hot) of
                ok ->
                    S = #state{client_id = ClientId, res = Res, callback = Callback, opts = Opts,
                               spill = Spill, spilling = Spilling},
                    %% What a previous VM left in the spill is produced first.
                    {ok, case Spill =/= undefined andalso erlkaf_spill:pending(Spill) > 0 of
                             true -> drain_soon(S, 0);
                             false -> S
                         end};
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
    %% An external fun calls straight through its export entry (`M:delivery_report(...)'
    %% with a variable M looks the function up on every report) and still runs the
    %% module's current code.
    case erlang:function_exported(M, delivery_report, 3) of
        true -> {function, fun M:delivery_report/3};
        false -> {function, fun M:delivery_report/2}
    end.

handle_call(sync, _From, S) ->
    {reply, ok, S};
handle_call({spill, Topic, Messages}, _From, #state{spill = Spill} = S) when Spill =/= undefined ->
    {Reply, S1} = spill(Topic, Messages, S),
    {reply, Reply, S1};
handle_call(get_stats, _From, #state{last_stats = Stats} = S) ->
    {reply, {ok, Stats}, S};
handle_call(_Other, _From, S) ->
    {reply, {error, unknown_call}, S}.

handle_cast(_Msg, S) ->
    {noreply, S}.

handle_info({erlkaf_dr, Reports}, S) ->
    reports(Reports, S),
    {noreply, S};
handle_info({erlkaf_dr_ready, Id}, S) ->
    take_reports(Id, S),
    {noreply, S};
handle_info({erlkaf_event, {error, Code, true, Reason} = Event}, S) ->
    %% A fatal error (e.g. fenced by a newer producer with the same transactional id):
    %% librdkafka refuses everything from now on. The callback and the log have it; the
    %% client stops (and is not restarted: the same configuration would be fenced again).
    {stop, {shutdown, {fatal_error, Code, Reason}}, event(Event, S)};
handle_info({erlkaf_event, Event}, S) ->
    {noreply, event(Event, S)};
handle_info(drain, #state{spill = Spill} = S) when Spill =/= undefined ->
    {noreply, drain(S)};
handle_info({erlkaf_stopped, _Report}, S) ->
    {noreply, S#state{stopped = true}};
handle_info({'EXIT', _From, Reason}, S) ->
    {stop, Reason, S};
handle_info(_Other, S) ->
    {noreply, S}.

terminate(_Reason, #state{client_id = ClientId, res = Res, opts = Opts} = S) ->
    erlkaf_registry:unregister(ClientId),
    %% Records still in the spill stay on disk for the next start with this id.
    _ = S#state.spill =/= undefined andalso erlkaf_spill:close(S#state.spill),
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
        {erlkaf_dr_ready, Id} ->
            take_reports(Id, S),
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

%% A round of reports the native client holds for this process: built here, on this
%% process's heap, a slice per call (the client waits until all are taken); a report
%% with a large value to copy alone on a dirty scheduler.
take_reports(Id, S) ->
    take_reports(erlkaf_nif:producer_take_reports(S#state.res, Id), Id, S).

take_reports({Reports, Left}, Id, S) ->
    %% (Empty: the round was taken back, or a heavy report comes first: no telemetry event.)
    _ = Reports =/= [] andalso reports(Reports, S),
    case Left of
        more -> take_reports(Id, S);
        heavy -> take_reports(erlkaf_nif:producer_take_heavy_report(S#state.res, Id), Id, S);
        done -> ok
    end.

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

%% One loop per kind of callback, the callback taken out of the state once per message
%% of reports (this runs once per produced message).
reports1(Reports, #state{callback = {function, F}} = S) when is_function(F, 3) ->
    each3(Reports, F, S);
reports1(Reports, #state{callback = {function, F}} = S) ->
    each2(Reports, F, S);
reports1(Reports, S) ->
    each_logged(Reports, S).

each3([{erlkaf_sync, Alias, Result} | Rest], F, S) ->
    Alias ! {erlkaf_sync, Alias, Result},
    each3(Rest, F, S);
each3([{MsgRef, Status, Msg} | Rest], F, S) ->
    try F(MsgRef, Status, Msg) catch Class:Reason:Stack -> callback_failed(Class, Reason, Stack, S) end,
    each3(Rest, F, S);
each3([], _F, _S) ->
    ok.

each2([{erlkaf_sync, Alias, Result} | Rest], F, S) ->
    Alias ! {erlkaf_sync, Alias, Result},
    each2(Rest, F, S);
each2([{_MsgRef, Status, Msg} | Rest], F, S) ->
    try F(Status, Msg) catch Class:Reason:Stack -> callback_failed(Class, Reason, Stack, S) end,
    each2(Rest, F, S);
each2([], _F, _S) ->
    ok.

%% No callback: failures are logged (successes are not even sent here).
each_logged([{erlkaf_sync, Alias, Result} | Rest], S) ->
    Alias ! {erlkaf_sync, Alias, Result},
    each_logged(Rest, S);
each_logged([{_MsgRef, {error, Reason}, #erlkaf_msg{topic = T, partition = P}} | Rest], S) ->
    logger:warning("erlkaf producer ~p: delivery to ~ts/~p failed: ~p",
                   [S#state.client_id, T, P, Reason], #{client_id => S#state.client_id}),
    each_logged(Rest, S);
each_logged([_ | Rest], S) ->
    each_logged(Rest, S);
each_logged([], _S) ->
    ok.

callback_failed(Class, Reason, Stack, S) ->
    logger:error("erlkaf producer ~p: delivery report callback failed: ~p:~p ~p",
                 [S#state.client_id, Class, Reason, Stack],
                 #{client_id => S#state.client_id}).

event(Event, #state{client_id = ClientId, opts = Opts} = S) ->
    case erlkaf_events:handle(Event, ClientId, maps:with([error_callback, stats_callback], Opts)) of
        {stats, Stats} -> S#state{last_stats = Stats};
        {oauth_refresh, Config} ->
            erlkaf_events:oauth_refresh(S#state.res, Config, maps:get(oauthbearer_token_refresh_callback, Opts), ClientId),
            S;
        ok -> S
    end.

%% ---------------------------------------------------------------------------------------
%% Disk spill (`local_disk_queue'): this process owns the file. Producers hand it what
%% librdkafka has no room for (and everything while the spill is not empty, so that order
%% is kept); it produces from the file as room frees up.

-define(DRAIN_CHUNK, 500).
-define(DRAIN_RETRY_MS, 50).

open_spill(ClientId, #{queue_buffering_overflow_strategy := local_disk_queue} = Opts) ->
    case erlkaf_spill:open(maps:get(local_disk_queue_dir, Opts), ClientId, maps:get(local_disk_queue_max_bytes, Opts)) of
        {ok, Spill} -> {ok, Spill, atomics:new(1, [])};
        {error, _} = E -> E
    end;
open_spill(_ClientId, _Opts) ->
    {ok, undefined, undefined}.

%% Appends Messages (any produce_batch form) behind the spill; the same partial result
%% as the produce path when a message is malformed or the spill is full.
spill(Topic, Messages, #state{spill = Spill0} = S) ->
    %% Stamped now (CreateTime is when the message was produced, not when it is drained).
    {Records, Bad} = records(Topic, Messages, erlang:system_time(millisecond), []),
    case erlkaf_spill:append(Spill0, Records) of
        {ok, Spill, N} ->
            S1 = case N of
                0 -> S#state{spill = Spill};
                _ -> drain_soon(S#state{spill = Spill}, 0)
            end,
            Refs = [Ref || {_, Ref, _, _, _, _, _} <- lists:sublist(Records, N)],
            case {N =:= length(Records), Bad} of
                {true, []} -> {{ok, Refs}, S1};
                {true, {Reason, Rest}} -> {{error, {Reason, Refs, Rest}}, S1};
                {false, _} -> {{error, {local_disk_queue_full, Refs, nthtail(N, Messages)}}, S1}
            end;
        {error, Reason} ->
            {{error, {{local_disk_queue, Reason}, [], Messages}}, S}
    end.

nthtail(0, L) -> L;
nthtail(N, [_ | T]) -> nthtail(N - 1, T).

records(_Topic, [], _Now, Acc) ->
    {lists:reverse(Acc), []};
records(Topic, [M | Rest] = All, Now, Acc) ->
    case normalize(M) of
        {ok, {P, K, V, H, Ts}} ->
            Stamp = case Ts of T when T =:= 0; T =:= undefined -> Now; _ -> Ts end,
            records(Topic, Rest, Now, [{Topic, erlkaf_nif:producer_msg_refs(1), P, K, V, H, Stamp} | Acc]);
        {error, What} ->
            {lists:reverse(Acc), {{badarg, What}, All}}
    end;
records(_Topic, Improper, _Now, Acc) ->
    {lists:reverse(Acc), {{badarg, message}, Improper}}.

%% The message forms of produce_batch/3 as {Partition, Key, Value, Headers, Timestamp};
%% values are flattened (the file keeps bytes). The NIF checks the details again.
normalize({P, K, V, H, Ts}) -> value(V, {P, K, V, H, Ts});
normalize({K, V}) -> value(V, {-1, K, V, undefined, 0});
normalize(#{} = M) ->
    V = maps:get(value, M, undefined),
    value(V, {maps:get(partition, M, -1), maps:get(key, M, undefined), V,
              maps:get(headers, M, undefined), maps:get(timestamp, M, 0)});
normalize(V) when is_binary(V); is_list(V) -> value(V, {-1, undefined, V, undefined, 0});
normalize(_) -> {error, message}.

value(undefined, M) -> {ok, M};
value(V, {P, K, _, H, Ts}) ->
    try {ok, {P, K, iolist_to_binary(V), H, Ts}}
    catch error:badarg -> {error, value}
    end.

drain_soon(#state{spilling = A, draining = false} = S, After) ->
    atomics:put(A, 1, 1),
    erlang:send_after(After, self(), drain),
    S#state{draining = true};
drain_soon(#state{spilling = A} = S, _After) ->
    atomics:put(A, 1, 1),
    S.

%% Produces the next chunk of the spill, in order; stops at a full queue (retried soon).
drain(#state{spill = Spill, spilling = A} = S0) ->
    S = S0#state{draining = false},
    case erlkaf_spill:read(Spill, ?DRAIN_CHUNK) of
        [] ->
            atomics:put(A, 1, 0),
            S#state{spill = erlkaf_spill:drained(Spill)};
        Chunk ->
            case drain_chunk(Chunk, S) of
                {done, S1} -> drain_soon(S1, 0);
                {full, S1} -> drain_soon(S1, ?DRAIN_RETRY_MS)
            end
    end.

drain_chunk([], S) ->
    {done, S};
drain_chunk([{{Topic, _, _, _, _, _, _}, _} | _] = Chunk, #state{res = Res, spill = Spill} = S) ->
    {Same, Rest} = lists:splitwith(fun({{T, _, _, _, _, _, _}, _}) -> T =:= Topic end, Chunk),
    Msgs = [{spilled_ref(Ref), P, K, V, H, Ts} || {{_, Ref, P, K, V, H, Ts}, _} <- Same],
    case produce_all(Res, Topic, Msgs, 0) of
        {ok, N} ->
            {_, Pos} = lists:nth(N, Same),
            drain_chunk(Rest, S#state{spill = erlkaf_spill:commit(Spill, Pos)});
        {queue_full, 0} ->
            {full, S};
        {queue_full, N} ->
            {_, Pos} = lists:nth(N, Same),
            {full, S#state{spill = erlkaf_spill:commit(Spill, Pos)}};
        {failed, N, Reason} ->
            %% This message can never be produced (too large, bad partition...): it gets
            %% its error report, and the spill moves past it.
            %% (Reported under the ref it was given to the NIF with.)
            {{T, _, P, K, V, H, _}, Pos} = lists:nth(N + 1, Same),
            {Ref, _, _, _, _, _} = lists:nth(N + 1, Msgs),
            reports([{Ref, {error, Reason}, #erlkaf_msg{topic = T, partition = P, offset = -1, key = K,
                                                        value = V, headers = H, timestamp = {0, not_available}}}], S),
            S1 = S#state{spill = erlkaf_spill:commit(Spill, Pos)},
            drain_chunk(lists:nthtail(N + 1, Same) ++ Rest, S1)
    end.

%% A record's MsgRef; a spill written while MsgRefs were Erlang references gets fresh
%% ones (its messages are produced, not refused as malformed).
spilled_ref(Ref) when is_integer(Ref), Ref > 0 -> Ref;
spilled_ref(_) -> erlkaf_nif:producer_msg_refs(1).

%% Hands Msgs to librdkafka (several NIF calls if need be): {ok, N}, {queue_full, N} or
%% {failed, N, Reason} with N the messages accepted.
produce_all(Res, Topic, Msgs, N0) ->
    %% With refs: the NIF then keeps each message's own ref for its report.
    case erlkaf_nif:producer_produce(Res, Topic, Msgs, owner, true) of
        {ok, Refs} -> {ok, N0 + length(Refs)};
        {more, Refs, Rest} -> produce_all(Res, Topic, Rest, N0 + length(Refs));
        {error, queue_full, Refs, _} -> {queue_full, N0 + length(Refs)};
        {error, Reason, Refs, _} -> {failed, N0 + length(Refs), Reason}
    end.
