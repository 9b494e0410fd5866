%%% Consumer groups on the embedded broker: every message reaches a handler, in order per
%%% partition; offsets are stored only after success; failures are retried; crashes
%%% restart one worker; commits survive a restart.
-module(erlkaf_consume_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include("erlkaf.hrl").

-compile([export_all, nowarn_export_all]).

suite() -> [{timetrap, {seconds, 120}}].
all() -> erlkaf_test_lib:all_t(?MODULE).

init_per_suite(Config) -> erlkaf_test_lib:start_mock(Config).
end_per_suite(Config) -> erlkaf_test_lib:stop_mock(Config).

init_per_testcase(Case, Config) ->
    T = erlkaf_test_lib:unique_topic(Case),
    ok = erlkaf_mock:create_topic(?config(mock, Config), T, 4, 1),
    ok = erlkaf:create_producer(Case, [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)}, {linger_ms, 1}]),
    [{topic, T}, {group, <<T/binary, "-g">>}, {producer, Case} | Config].

end_per_testcase(Case, Config) ->
    erlkaf:stop_client(Case),
    [erlkaf:stop_client(C) || C <- [?config(group, Config), g1, g2, g3]],
    ok.

client_config(Config) ->
    [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)}, {auto_commit_interval_ms, 200},
     {session_timeout_ms, 6000}, {heartbeat_interval_ms, 500}].

produce(Config, N) ->
    produce(Config, N, 0).
produce(Config, N, From) ->
    Msgs = [#{key => integer_to_binary(I), value => integer_to_binary(I), partition => I rem 4}
            || I <- lists:seq(From, From + N - 1)],
    {ok, _} = erlkaf:produce_batch(?config(producer, Config), ?config(topic, Config), Msgs),
    ok = erlkaf:flush(?config(producer, Config), 10000).

%% Waits for `handled' messages until `Want' distinct values were seen; returns
%% #{Value => [{Partition, Offset}]} (all deliveries).
collect(Tag, Want) ->
    collect(Tag, Want, #{}, 30000).
collect(Tag, Want, Acc, Timeout) ->
    case map_size(Acc) >= Want of
        true -> Acc;
        false ->
            receive
                {handled, Tag, _T, P, O, V} -> collect(Tag, Want, maps:update_with(V, fun(L) -> [{P, O} | L] end, [{P, O}], Acc), Timeout);
                {batch, Tag, Ms} -> collect(Tag, Want, lists:foldl(fun({_, P, O, V}, A) -> maps:update_with(V, fun(L) -> [{P, O} | L] end, [{P, O}], A) end, Acc, Ms), Timeout)
            after Timeout ->
                ct:fail({missing, Want - map_size(Acc)})
            end
    end.

%% Offsets per partition are each seen, ascending, from 0 (order kept, no gap).
check_order(Seen) ->
    ByPart = lists:foldl(fun({P, O}, A) -> maps:update_with(P, fun(L) -> [O | L] end, [O], A) end, #{},
                         lists:append(maps:values(Seen))),
    maps:foreach(fun(_P, Os) ->
        Sorted = lists:usort(Os),
        ?assertEqual(lists:seq(0, length(Sorted) - 1), Sorted)
    end, ByPart).

t_seed_form_consumes_every_message_in_order(Config) ->
    produce(Config, 1000),
    Tag = make_ref(),
    ok = erlkaf:create_consumer_group(?config(group, Config), [?config(topic, Config)], client_config(Config),
                                      [{auto_offset_reset, earliest}], erlkaf_test_handler, #{pid => self(), tag => Tag}),
    Seen = collect(Tag, 1000),
    ?assertEqual(1000, map_size(Seen)),
    ?assert(lists:all(fun(L) -> length(L) =:= 1 end, maps:values(Seen))),
    check_order(Seen),
    %% Order within a partition as delivered.
    receive {handled, Tag, _, _, _, _} = Extra -> ct:fail({extra, Extra}) after 300 -> ok end,
    {ok, Assigned} = erlkaf:assignment(?config(group, Config)),
    ?assertEqual(4, length(Assigned)).

t_batch_dispatch(Config) ->
    produce(Config, 400),
    Tag = make_ref(),
    ok = erlkaf:create_consumer_group(g1, ?config(group, Config),
                                      [{?config(topic, Config), [{callback_module, erlkaf_test_handler},
                                                                {callback_args, #{pid => self(), tag => Tag}},
                                                                {dispatch_mode, {batch, 25}}]}],
                                      client_config(Config), [{auto_offset_reset, earliest}]),
    Seen = collect(Tag, 400),
    check_order(Seen).

t_handler_errors_and_crashes_are_retried(Config) ->
    produce(Config, 200),
    Tag = make_ref(),
    Args = #{pid => self(), tag => Tag, fail_once => [3, 10], crash_worker_once => [20]},
    ok = erlkaf:create_consumer_group(?config(group, Config), [?config(topic, Config)], client_config(Config),
                                      [{auto_offset_reset, earliest}], erlkaf_test_handler, Args),
    Seen = collect(Tag, 200),
    check_order(Seen),
    %% The failed and crashed ones were called again and then handled.
    receive {failed, Tag, _, _, 3} -> ok after 0 -> ct:fail(no_failure_seen) end,
    receive {crashing, Tag, _, _, 20} -> ok after 0 -> ct:fail(no_crash_seen) end.

t_max_retries_goes_to_dead_letter(Config) ->
    produce(Config, 8),
    Tag = make_ref(),
    ok = erlkaf:create_consumer_group(g2, ?config(group, Config),
                                      [{?config(topic, Config), [{callback_module, erlkaf_test_handler},
                                                                {callback_args, #{pid => self(), tag => Tag, always_fail => true}},
                                                                {max_retries, 1}]}],
                                      client_config(Config), [{auto_offset_reset, earliest}]),
    Dead = [receive {dead_letter, Tag, _, P, O} -> {P, O} after 30000 -> ct:fail(no_dead_letter) end || _ <- lists:seq(1, 8)],
    ?assertEqual(8, length(lists:usort(Dead))).

t_commit_then_restart_resumes_after_committed(Config) ->
    produce(Config, 100),
    Tag = make_ref(),
    G = ?config(group, Config),
    ok = erlkaf:create_consumer_group(G, [?config(topic, Config)], client_config(Config),
                                      [{auto_offset_reset, earliest}], erlkaf_test_handler, #{pid => self(), tag => Tag}),
    _ = collect(Tag, 100),
    ok = erlkaf:commit_offsets(G),
    ok = erlkaf:stop_client(G),
    produce(Config, 50, 100),
    Tag2 = make_ref(),
    ok = erlkaf:create_consumer_group(G, [?config(topic, Config)], client_config(Config),
                                      [{auto_offset_reset, earliest}], erlkaf_test_handler, #{pid => self(), tag => Tag2}),
    Seen = collect(Tag2, 50),
    ?assertEqual(lists:seq(100, 149), lists:sort([binary_to_integer(V) || V <- maps:keys(Seen)])),
    receive {handled, Tag2, _, _, _, _} = Extra -> ct:fail({extra, Extra}) after 500 -> ok end.

t_quiet_partition_delivers_in_milliseconds(Config) ->
    Tag = make_ref(),
    ok = erlkaf:create_consumer_group(?config(group, Config), [?config(topic, Config)], client_config(Config),
                                      [{auto_offset_reset, earliest}], erlkaf_test_handler, #{pid => self(), tag => Tag}),
    [receive {init, Tag, _, _, _, _} -> ok after 20000 -> ct:fail(no_assignment) end || _ <- lists:seq(1, 4)],
    timer:sleep(1500),
    T0 = erlang:monotonic_time(millisecond),
    {ok, _, _} = erlkaf:produce_sync(?config(producer, Config), ?config(topic, Config), <<"k">>, <<"quiet">>),
    receive {handled, Tag, _, _, _, <<"quiet">>} -> ok after 10000 -> ct:fail(not_delivered) end,
    Ms = erlang:monotonic_time(millisecond) - T0,
    ct:pal("quiet partition: produced and handled in ~p ms", [Ms]),
    ?assert(Ms < 1000).

t_two_members_rebalance_without_loss(Config) ->
    G = ?config(group, Config),
    Tag = make_ref(),
    Cfg = client_config(Config),
    ok = erlkaf:create_consumer_group(g1, G, [{?config(topic, Config), [{callback_module, erlkaf_test_handler},
                                                                       {callback_args, #{pid => self(), tag => Tag}}]}],
                                      Cfg, [{auto_offset_reset, earliest}]),
    produce(Config, 300),
    _ = collect(Tag, 300),
    ok = erlkaf:create_consumer_group(g2, G, [{?config(topic, Config), [{callback_module, erlkaf_test_handler},
                                                                       {callback_args, #{pid => self(), tag => Tag}}]}],
                                      Cfg, [{auto_offset_reset, earliest}]),
    produce(Config, 300, 300),
    Seen = collect(Tag, 600),
    check_order(maps:filter(fun(V, _) -> binary_to_integer(V) >= 0 end, Seen)),
    erlkaf_test_lib:wait_until(fun() ->
        {ok, A1} = erlkaf:assignment(g1), {ok, A2} = erlkaf:assignment(g2),
        length(A1) + length(A2) =:= 4 andalso A1 =/= [] andalso A2 =/= []
    end, 30000),
    ok = erlkaf:stop_client(g1),
    produce(Config, 100, 600),
    Seen2 = collect(Tag, 700, Seen, 30000),
    ?assertEqual(700, map_size(Seen2)).
