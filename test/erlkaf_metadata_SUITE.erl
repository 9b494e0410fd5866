%%% Metadata and offset queries on producers and consumers, against the embedded broker.
-module(erlkaf_metadata_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include("erlkaf.hrl").

-compile([export_all, nowarn_export_all]).

suite() -> [{timetrap, {seconds, 60}}].
all() -> erlkaf_test_lib:all_t(?MODULE).

init_per_testcase(Case, Config0) ->
    Config = erlkaf_test_lib:start_mock([{brokers, 3} | Config0]),
    T = erlkaf_test_lib:unique_topic(Case),
    ok = erlkaf_mock:create_topic(?config(mock, Config), T, 4, 3),
    ok = erlkaf:create_producer(Case, [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)},
                                       {allow_auto_create_topics, false}]),
    [{topic, T}, {client, Case} | Config].

end_per_testcase(Case, Config) ->
    [erlkaf:stop_client(C) || C <- [Case, meta_group, stats_p]],
    erlkaf_test_lib:stop_mock(Config).

t_metadata_of_cluster_and_topic(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    {ok, #{brokers := Brokers, topics := Topics}} = erlkaf:get_metadata(C),
    ?assertEqual([1, 2, 3], lists:sort([Id || #{id := Id} <- Brokers])),
    [#{host := <<"127.0.0.1">>, port := Port} | _] = Brokers,
    ?assert(is_integer(Port) andalso Port > 0),
    [#{error := ok, partitions := Ps}] = [Tp || #{name := N} = Tp <- Topics, N =:= T],
    ?assertEqual([0, 1, 2, 3], [Id || #{id := Id} <- Ps]),
    [begin
         ?assert(lists:member(L, [1, 2, 3])),
         ?assertEqual([1, 2, 3], lists:sort(R)),
         ?assert(lists:member(L, I))
     end || #{error := ok, leader := L, replicas := R, isrs := I} <- Ps],
    {ok, #{topics := [#{name := T, partitions := Ps}]}} = erlkaf:get_metadata(C, T),
    ?assertEqual({ok, 4}, erlkaf:get_partitions_count(C, T)),
    ?assertEqual({error, unknown_topic_or_part}, erlkaf:get_partitions_count(C, <<"no-such-topic">>)),
    ?assertEqual({error, {badarg, topic}}, erlkaf:get_metadata(C, 42)),
    ?assertEqual({error, undefined_client}, erlkaf:get_metadata(no_such_client)).

t_watermarks_and_offsets_for_times(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    ?assertEqual({ok, {0, 0}}, erlkaf:query_watermark_offsets(C, T, 1)),
    [{ok, 1, _} = erlkaf:produce_sync(C, T, <<"k">>, integer_to_binary(I), #{partition => 1, timestamp => 1000 * I})
     || I <- lists:seq(1, 10)],
    ?assertEqual({ok, {0, 10}}, erlkaf:query_watermark_offsets(C, T, 1)),
    R = erlkaf:offsets_for_times(C, [{T, 1, 2500}, {T, 1, 99000}, {T, 0, 0}]),
    ct:pal("offsets_for_times: ~p", [R]),
    {ok, [{T, 1, O1}, {T, 1, O2}, {T, 0, O3}]} = R,
    %% The mock stamps LogAppendTime, so a timestamp query answers from that clock: an
    %% offset within the partition, or -1 past its end.
    ?assert(O1 >= -1 andalso O1 =< 10),
    ?assert(O2 >= -1 andalso O2 =< 10),
    ?assert(O3 >= -1 andalso O3 =< 0),
    ?assertEqual({error, {badarg, partitions}}, erlkaf:offsets_for_times(C, [{T, -1, 0}])),
    ?assertMatch({error, _}, erlkaf:query_watermark_offsets(C, T, 9, 2000)).

t_consumer_metadata_and_lag(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    {ok, _} = erlkaf:produce_batch(C, T, [#{value => <<"v">>, partition => P} || P <- [0, 0, 1, 2, 3, 3, 3]]),
    ok = erlkaf:flush(C, 5000),
    Self = self(),
    ok = erlkaf:create_consumer_group(meta_group, <<T/binary, "-g">>,
                                      [{T, [{callback_module, erlkaf_test_handler},
                                            {callback_args, #{pid => Self, tag => meta}}]}],
                                      [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)},
                                       {fetch_wait_max_ms, 10}],
                                      [{auto_offset_reset, earliest}]),
    [receive {handled, meta, _, _, _, _} -> ok after 20000 -> ct:fail(not_consumed) end || _ <- lists:seq(1, 7)],
    {ok, #{topics := [#{partitions := Ps}]}} = erlkaf:get_metadata(meta_group, T),
    ?assertEqual(4, length(Ps)),
    ok = erlkaf:commit_offsets(meta_group),
    {ok, Lag} = erlkaf:consumer_lag(meta_group),
    ?assertEqual([{T, P, 0} || P <- [0, 1, 2, 3]], lists:sort(Lag)),
    {ok, _} = erlkaf:produce_batch(C, T, [#{value => <<"late">>, partition => 2}]),
    ok = erlkaf:flush(C, 5000),
    ?assertEqual({ok, {0, 2}}, erlkaf:query_watermark_offsets(meta_group, T, 2)).

%% librdkafka's statistics reach the stats_callback and get_stats/1 as maps (read by the
%% NIF; no JSON library on the Erlang side), on producers and consumers.
t_statistics_as_maps(Config) ->
    T = ?config(topic, Config),
    Self = self(),
    Cb = fun(Id, Stats) -> Self ! {stats, Id, Stats}, ok end,
    ok = erlkaf:create_producer(stats_p, [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)},
                                          {statistics_interval_ms, 100}, {stats_callback, Cb}]),
    {ok, _, _} = erlkaf:produce_sync(stats_p, T, <<"k">>, <<"v">>),
    Stats = receive {stats, stats_p, S} -> S after 5000 -> ct:fail(no_stats) end,
    #{<<"name">> := Name, <<"type">> := <<"producer">>, <<"brokers">> := Brokers,
      <<"topics">> := #{}, <<"msg_cnt">> := MsgCnt, <<"ts">> := Ts} = Stats,
    ?assert(is_binary(Name) andalso is_integer(MsgCnt) andalso is_integer(Ts)),
    ?assertEqual(3, map_size(Brokers)),
    [#{<<"nodeid">> := _, <<"rtt">> := #{<<"p99">> := _}} | _] = maps:values(Brokers),
    erlkaf_test_lib:wait_until(fun() ->
        case erlkaf:get_stats(stats_p) of
            {ok, #{<<"topics">> := #{T := #{<<"partitions">> := Ps}}}} -> map_size(Ps) >= 4;
            _ -> false
        end
    end, 5000),
    ok = erlkaf:stop_client(stats_p),
    ok = erlkaf:create_consumer_group(meta_group, <<T/binary, "-g">>,
                                      [{T, [{callback_module, erlkaf_test_handler},
                                            {callback_args, #{pid => Self, tag => stats}}]}],
                                      [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)},
                                       {statistics_interval_ms, 100}],
                                      [{auto_offset_reset, earliest}]),
    erlkaf_test_lib:wait_until(fun() ->
        case erlkaf:get_stats(meta_group) of
            {ok, #{<<"type">> := <<"consumer">>, <<"cgrp">> := #{}}} -> true;
            _ -> false
        end
    end, 10000),
    ?assertEqual({error, undefined_client}, erlkaf:get_stats(no_such_client)).

%% With telemetry present (test/telemetry.erl stands in for the library), each documented
%% event arrives with its measurements and metadata.
t_telemetry_events(Config) ->
    T = ?config(topic, Config),
    telemetry:attach(self()),
    try
        ok = erlkaf:create_producer(tel_p, [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)},
                                            {statistics_interval_ms, 100},
                                            {delivery_report_callback, fun(_, _, _) -> ok end}]),
        true = erlkaf_telemetry:enabled(),
        {ok, _} = erlkaf:produce_batch(tel_p, T, [<<"abc">>, {<<"k">>, <<"de">>}, #{value => <<"f">>, partition => 1}]),
        receive {telemetry, [erlkaf, produce_batch], #{count := 3, bytes := 6, duration := D}, #{client_id := tel_p, topic := T, result := ok}} ->
            ?assert(is_integer(D))
        after 5000 -> ct:fail(no_produce_batch_event)
        end,
        Delivered = fun Loop(N) when N >= 3 -> N;
                        Loop(N) -> receive {telemetry, [erlkaf, delivery], #{ok := Ok, error := 0}, #{client_id := tel_p}} -> Loop(N + Ok)
                                   after 5000 -> ct:fail({delivered, N}) end
                    end(0),
        ?assertEqual(3, Delivered),
        receive {telemetry, [erlkaf, stats], #{msg_cnt := _}, #{client_id := tel_p, stats := #{<<"name">> := _}}} -> ok
        after 5000 -> ct:fail(no_stats_event)
        end,
        ok = erlkaf:create_consumer_group(meta_group, <<T/binary, "-g">>,
                                          [{T, [{callback_module, erlkaf_test_handler},
                                                {callback_args, #{pid => self(), tag => tel}},
                                                {dispatch_mode, {batch, 10}}]}],
                                          [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)}, {fetch_wait_max_ms, 10}],
                                          [{auto_offset_reset, earliest}]),
        receive {telemetry, [erlkaf, rebalance], #{count := 4}, #{client_id := meta_group, kind := assigned, partitions := Ps}} ->
            ?assertEqual(4, length(Ps))
        after 15000 -> ct:fail(no_rebalance_event)
        end,
        Consumed = fun Loop(N) when N >= 3 -> N;
                       Loop(N) -> receive {telemetry, [erlkaf, consume, batch], #{count := C, duration := _},
                                           #{client_id := meta_group, topic := T, partition := _, result := ok}} -> Loop(N + C)
                                  after 15000 -> ct:fail({consumed, N}) end
                   end(0),
        ?assertEqual(3, Consumed)
    after
        telemetry:detach(),
        erlkaf:stop_client(tel_p)
    end.
