%%% @doc `make soak': produces and consumes N messages (default 10,000,000) through the
%%% embedded broker (own OS process), sampling the VM's RSS and `erlang:memory(total)'
%%% every second (`--sample-ms'), then stops everything. Fails when memory drifts by more than 5% after
%%% warm-up, when a message is missing, or when a native client, batch or reaper is left.
%%% `make soak-ci' is the shortened run CI makes (4M messages after 1M of warm-up, a
%%% sample every 250 ms). `--warmup N': N messages produced and consumed before sampling.
%%%
%%% Drift: the mean of the last quarter of the samples against the peak of the second
%%% quarter (the first quarter is warm-up: librdkafka's queues, the consumer's fetch queue
%%% and the BEAM's allocators filling), with 8 MiB of absolute slack for allocator noise.
-module(erlkaf_soak).

-include_lib("erlkaf/include/erlkaf.hrl").

-export([main/1, init/4, handle_message/2]).

-define(TOPIC, <<"soak">>).
-define(PARTITIONS, 16).
-define(MAX_LAG, 20000).
-define(SLACK, 8 * 1024 * 1024).

main(Args) ->
    N = arg("--messages", Args, 10000000),
    ok = erlkaf:start(),
    Base = erlkaf_nif:nif_counters(),
    {ok, Broker, Bootstrap} = erlkaf_broker_cli:spawn_os_process(
                                ["--topic", binary_to_list(?TOPIC), "--partitions", integer_to_list(?PARTITIONS)]),
    Consumed = counters:new(1, [write_concurrency]),
    Failed = counters:new(1, [write_concurrency]),
    persistent_term:put({?MODULE, consumed}, Consumed),
    ok = erlkaf:create_producer(soak_producer, [{bootstrap_servers, Bootstrap}, {linger_ms, 5},
                                                {delivery_report_only_error, true},
                                                {delivery_report_callback, fun(_, _, _) -> counters:add(Failed, 1, 1) end}]),
    ok = erlkaf:create_consumer_group(soak_group, <<"soak">>,
                                      [{?TOPIC, [{callback_module, ?MODULE}, {dispatch_mode, {batch, 1000}}]}],
                                      [{bootstrap_servers, Bootstrap}, {fetch_wait_max_ms, 10}],
                                      [{auto_offset_reset, earliest}]),
    Self = self(),
    Every = arg("--sample-ms", Args, 1000),
    Msgs = [binary:copy(<<"s">>, 100) || _ <- lists:seq(1, 1000)],
    %% Warm-up, not sampled: the allocators' and librdkafka's working set grows in the
    %% first seconds of traffic, and drift is about steady traffic.
    Warmup = arg("--warmup", Args, 0),
    produce(Warmup, 0, Msgs, Consumed),
    _ = wait(fun() -> counters:get(Consumed, 1) >= Warmup end, 60000),
    counters:put(Consumed, 1, 0),
    Sampler = spawn_link(fun() -> sample(Self, Every, []) end),
    T0 = erlang:monotonic_time(millisecond),
    produce(N, 0, Msgs, Consumed),
    ok = erlkaf:flush(soak_producer, 60000),
    case wait(fun() -> counters:get(Consumed, 1) >= N end, 60000) of
        ok -> ok;
        timeout -> io:format("stalled at ~p: assignment ~p~nlag ~p~nposition ~p~n", [counters:get(Consumed, 1), erlkaf:assignment(soak_group), erlkaf:consumer_lag(soak_group), erlkaf:position(soak_group)])
    end,
    Secs = (erlang:monotonic_time(millisecond) - T0) / 1000,
    Sampler ! {stop, self()},
    Samples = receive {samples, S} -> lists:reverse(S) end,
    ok = erlkaf:stop_client(soak_group),
    ok = erlkaf:stop_client(soak_producer),
    Broker ! stop,
    Clean = wait(fun() ->
        #{live_clients := L, live_batches := B, outstanding := O, reapers := R} = erlkaf_nif:nif_counters(),
        L =< maps:get(live_clients, Base) andalso B =:= 0 andalso O =:= 0 andalso R =:= 0
    end, 30000),
    {RssDrift, MemDrift} = {drift([R || {R, _} <- Samples]), drift([M || {_, M} <- Samples])},
    Got = counters:get(Consumed, 1),
    io:format("soak: ~p messages produced (~p failed reports) and ~p consumed in ~.1f s; ~p samples; "
              "RSS ~s, erlang:memory ~s; native objects left: ~s~n",
              [N, counters:get(Failed, 1), Got, Secs, length(Samples), show(RssDrift), show(MemDrift),
               case Clean of ok -> "none"; timeout -> io_lib:format("~p", [erlkaf_nif:nif_counters()]) end]),
    Ok = Got >= N andalso counters:get(Failed, 1) =:= 0 andalso Clean =:= ok andalso within(RssDrift) andalso within(MemDrift),
    case Ok of
        true -> ok;
        false -> io:format("soak: FAILED~n"), erlang:halt(1)
    end.

%% Keeps the consumer within ?MAX_LAG messages: the mock keeps ~5 MB (~40k of these
%% messages) per partition, and the sticky partitioner may put a whole lag on one of them;
%% a consumer further behind would see its offset reset past truncated messages.
produce(N, Sent, _Msgs, _Consumed) when Sent >= N ->
    ok;
produce(N, Sent, Msgs, Consumed) ->
    case Sent - counters:get(Consumed, 1) > ?MAX_LAG of
        true ->
            timer:sleep(2),
            produce(N, Sent, Msgs, Consumed);
        false ->
            Batch = lists:sublist(Msgs, N - Sent),
            {ok, _} = erlkaf:produce_batch(soak_producer, ?TOPIC, Batch),
            produce(N, Sent + length(Batch), Msgs, Consumed)
    end.

init(_Topic, _Partition, _Offset, _Args) ->
    {ok, persistent_term:get({?MODULE, consumed})}.

handle_message(Msgs, Consumed) ->
    counters:add(Consumed, 1, length(Msgs)),
    {ok, Consumed}.

sample(Parent, Every, Acc) ->
    receive
        {stop, Parent} -> Parent ! {samples, Acc}
    after Every ->
        sample(Parent, Every, [{rss(), erlang:memory(total)} | Acc])
    end.

rss() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    [_, Rest] = binary:split(Status, <<"VmRSS:">>),
    [Kb | _] = string:lexemes(Rest, " \t\n"),
    binary_to_integer(Kb) * 1024.

%% {Second-quarter peak, last-quarter mean} (undefined with fewer than 8 samples). The
%% peak, not the mean: RSS swings by 10-15 MiB within a few seconds of steady traffic
%% (allocators taking and returning memory), which a mean against a mean read as drift
%% in about one short run in six; a leak still shows as the end rising above what the
%% workload needed earlier.
drift(L) when length(L) < 8 ->
    undefined;
drift(L) ->
    Q = length(L) div 4,
    Mean = fun(Xs) -> lists:sum(Xs) / length(Xs) end,
    {lists:max(lists:sublist(L, Q + 1, Q)), Mean(lists:nthtail(length(L) - Q, L))}.

within(undefined) -> true;
within({Early, Late}) -> Late =< Early * 1.05 + ?SLACK.

show(undefined) -> "too few samples to judge drift";
show({Early, Late}) ->
    io_lib:format("~.1f -> ~.1f MiB (~.1f%)", [Early / 1048576, Late / 1048576, (Late - Early) * 100 / Early]).

wait(F, Timeout) when Timeout =< 0 ->
    case F() of true -> ok; false -> timeout end;
wait(F, Timeout) ->
    case F() of
        true -> ok;
        false -> timer:sleep(50), wait(F, Timeout - 50)
    end.

arg(Name, Args, Default) ->
    case lists:dropwhile(fun(A) -> A =/= Name end, Args) of
        [_, V | _] -> list_to_integer(V);
        _ -> Default
    end.
