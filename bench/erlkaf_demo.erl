%%% @doc `make demo' (or `make demo BROKERS=host:port' for any broker with a `demo' topic
%%% or topic auto-creation): starts the embedded broker in its own OS process, produces a million
%%% 100-byte messages with `erlkaf:produce_batch/3' (batches of 1000), counts every
%%% delivery report in a callback, and prints the throughput.
-module(erlkaf_demo).

-export([main/0, main/1, delivery_report/3]).

-define(CLIENT, erlkaf_demo).

main() ->
    main([]).

main(Args) ->
    N = arg("--messages", Args, 1000000),
    Size = arg("--size", Args, 100),
    Batch = arg("--batch", Args, 1000),
    ok = erlkaf:start(),
    {Broker, Bootstrap} = case lists:dropwhile(fun(A) -> A =/= "--bootstrap" end, Args) of
        [_, B | _] ->
            io:format("broker: ~ts~n", [B]),
            {spawn(fun() -> receive stop -> ok end end), list_to_binary(B)};
        _ ->
            {ok, Pid, B} = erlkaf_broker_cli:spawn_os_process(["--topic", "demo", "--partitions", "32"]),
            io:format("embedded broker (bin/erlkaf-broker, own OS process): ~ts~n", [B]),
            {Pid, B}
    end,
    Counters = counters:new(2, [write_concurrency]),
    persistent_term:put({?MODULE, counters}, Counters),
    ok = erlkaf:create_producer(?CLIENT, [{bootstrap_servers, Bootstrap},
                                          {delivery_report_callback, ?MODULE},
                                          {linger_ms, 5},
                                          {queue_buffering_max_messages, 500000}]),
    Value = binary:copy(<<"x">>, Size),
    Msgs = lists:duplicate(Batch, Value),
    io:format("producing ~p messages of ~p bytes in batches of ~p...~n", [N, Size, Batch]),
    T0 = erlang:monotonic_time(),
    Progress = spawn_link(fun() -> progress(Counters, N, T0) end),
    produce(N, Batch, Msgs),
    Produced = erlang:monotonic_time(),
    wait_reports(Counters, N),
    T1 = erlang:monotonic_time(),
    unlink(Progress), exit(Progress, kill),
    Secs = erlang:convert_time_unit(T1 - T0, native, microsecond) / 1.0e6,
    PSecs = erlang:convert_time_unit(Produced - T0, native, microsecond) / 1.0e6,
    Ok = counters:get(Counters, 1), Err = counters:get(Counters, 2),
    io:format("~n"),
    io:format("produced ~p messages in ~.2f s (enqueue), all ~p delivery reports in ~.2f s~n",
              [N, PSecs, Ok + Err, Secs]),
    io:format("throughput: ~w msg/s, ~.1f MB/s; reports ok=~p error=~p~n",
              [round(N / Secs), N * Size / Secs / 1.0e6, Ok, Err]),
    ok = erlkaf:stop_client(?CLIENT),
    Broker ! stop,
    case Err of
        0 -> ok;
        _ -> erlang:halt(1)
    end.

delivery_report(_Ref, ok, _Msg) ->
    counters:add(persistent_term:get({?MODULE, counters}), 1, 1);
delivery_report(_Ref, {error, _}, _Msg) ->
    counters:add(persistent_term:get({?MODULE, counters}), 2, 1).

produce(N, _Batch, _Msgs) when N =< 0 ->
    ok;
produce(N, Batch, Msgs) ->
    Chunk = case N < Batch of true -> lists:sublist(Msgs, N); false -> Msgs end,
    {ok, _} = erlkaf:produce_batch(?CLIENT, <<"demo">>, Chunk),
    produce(N - Batch, Batch, Msgs).

wait_reports(Counters, N) ->
    case counters:get(Counters, 1) + counters:get(Counters, 2) >= N of
        true -> ok;
        false -> timer:sleep(5), wait_reports(Counters, N)
    end.

progress(Counters, N, T0) ->
    timer:sleep(500),
    Done = counters:get(Counters, 1) + counters:get(Counters, 2),
    Secs = erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond) / 1.0e6,
    io:format("\r  ~p/~p delivery reports (~w%), ~w msg/s   ", [Done, N, 100 * Done div N, round(Done / Secs)]),
    progress(Counters, N, T0).

arg(Name, Args, Default) ->
    case lists:dropwhile(fun(A) -> A =/= Name end, Args) of
        [_, V | _] -> list_to_integer(V);
        _ -> Default
    end.
