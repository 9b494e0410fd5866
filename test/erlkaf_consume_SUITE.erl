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

%% The mock answers an empty fetch only after fetch_wait_max_ms (500 by default), even when
%% data arrives meanwhile: keep it short so that tests do not wait on it.
client_config(Config) ->
    [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)}, {auto_commit_interval_ms, 200},
     {session_timeout_ms, 6000}, {heartbeat_interval_ms, 500}, {fetch_wait_max_ms, 10}].

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

%% Values of every size class the consumer builds differently (none, empty, heap binary,
%% shared 4 KiB chunks, a binary of their own) arrive intact, in order, in one partition.
t_values_of_every_size_arrive_intact(Config) ->
    Sizes = [0, 1, 64, 65, 100, 1000, 1024, 1025, 4096, 5000, 70, 3000, 2000, 900, 65, 64, 20000],
    Values = [undefined | [iolist_to_binary([integer_to_binary(I), ":", binary:copy(<<(I rem 251)>>, N)]) || {I, N} <- lists:zip(lists:seq(1, 3 * length(Sizes)), Sizes ++ Sizes ++ Sizes)]],
    {ok, _} = erlkaf:produce_batch(?config(producer, Config), ?config(topic, Config),
                                   [#{key => <<"k">>, value => V, partition => 2} || V <- Values]),
    ok = erlkaf:flush(?config(producer, Config), 10000),
    Tag = make_ref(),
    ok = erlkaf:create_consumer_group(g1, ?config(group, Config),
                                      [{?config(topic, Config), [{callback_module, erlkaf_test_handler},
                                                                {callback_args, #{pid => self(), tag => Tag}},
                                                                {dispatch_mode, {batch, 1000}}]}],
                                      client_config(Config), [{auto_offset_reset, earliest}]),
    Got = receive_values(Tag, length(Values), []),
    ?assertEqual(Values, Got).

receive_values(_Tag, 0, Acc) ->
    lists:reverse(Acc);
receive_values(Tag, N, Acc) ->
    receive {batch, Tag, Ms} -> receive_values(Tag, N - length(Ms), lists:reverse([V || {_, _, _, V} <- Ms], Acc))
    after 30000 -> ct:fail({missing, N})
    end.

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

%% A worker killed with batches in its mailbox, whose successor registers late (its init
%% is slow): batches the pump sends meanwhile meet a dead process. The successor must
%% start from the first offset nobody finished (the dead worker's unprocessed batches
%% are fetched again), not from the batches that waited for it.
t_killed_worker_unprocessed_batches_come_again(Config) ->
    produce(Config, 100),
    Tag = make_ref(),
    Args = #{pid => self(), tag => Tag, hold_at => 0, restart_delay_ms => 1000},
    ok = erlkaf:create_consumer_group(?config(group, Config), [?config(topic, Config)],
                                      [{max_inflight_batches, 1000} | client_config(Config)],
                                      [{auto_offset_reset, earliest}], erlkaf_test_handler, Args),
    Held = [receive {holding, Tag, _, P, 0, W} -> {P, W} after 20000 -> ct:fail(no_worker_holding) end
            || _ <- lists:seq(1, 4)],
    %% More batches behind the held one, then the workers die with all of them unhandled.
    produce(Config, 100, 100),
    timer:sleep(200),
    [exit(W, kill) || {_, W} <- Held],
    %% Sent while the successors sleep in init/4: these reach no live process.
    produce(Config, 100, 200),
    Seen = collect(Tag, 300),
    check_order(Seen).

%% Each partition's init/4 runs in its own process: four slow ones run side by side (one
%% after another they took four times as long, and held the group process meanwhile).
t_slow_inits_run_side_by_side(Config) ->
    produce(Config, 100),
    Tag = make_ref(),
    Args = #{pid => self(), tag => Tag, init_delay_ms => 1500},
    ok = erlkaf:create_consumer_group(?config(group, Config), [?config(topic, Config)], client_config(Config),
                                      [{auto_offset_reset, earliest}], erlkaf_test_handler, Args),
    Starts = [receive {init, Tag, _, _, _, _} -> erlang:monotonic_time(millisecond) after 20000 -> ct:fail(no_init) end
              || _ <- lists:seq(1, 4)],
    Spread = lists:max(Starts) - lists:min(Starts),
    ct:pal("init/4 of 4 partitions started within ~p ms", [Spread]),
    ?assert(Spread < 1000),
    Seen = collect(Tag, 100),
    check_order(Seen),
    %% The group process answers while handlers run.
    {ok, _} = erlkaf:get_stats(?config(group, Config)).

%% A rebalance while every worker of the first member is still in its (slow) init/4: the
%% group process serves the revoke at once (it used to be held by the init/4 calls), the
%% workers stop after init/4 without registering, and nothing is lost.
t_revoke_during_slow_init_loses_nothing(Config) ->
    G = ?config(group, Config),
    Tag = make_ref(),
    Cfg = client_config(Config),
    Member = fun(Id, Args) ->
        ok = erlkaf:create_consumer_group(Id, G, [{?config(topic, Config), [{callback_module, erlkaf_test_handler},
                                                                          {callback_args, Args#{pid => self(), tag => Tag}}]}],
                                          Cfg, [{auto_offset_reset, earliest}])
    end,
    produce(Config, 200),
    Member(g1, #{init_delay_ms => 2000}),
    [receive {init, Tag, _, _, _, _} -> ok after 20000 -> ct:fail(no_init) end || _ <- lists:seq(1, 4)],
    Member(g2, #{}),
    Seen = collect(Tag, 200),
    check_order(Seen),
    erlkaf_test_lib:wait_until(fun() ->
        {ok, A1} = erlkaf:assignment(g1), {ok, A2} = erlkaf:assignment(g2),
        length(A1) + length(A2) =:= 4 andalso A1 =/= [] andalso A2 =/= []
    end, 30000),
    produce(Config, 100, 200),
    ?assertEqual(300, map_size(collect(Tag, 300, Seen, 30000))).

%% A partition whose init/4 fails is paused (and not restarted in a loop); the others are
%% consumed, and the group stops cleanly.
t_failed_init_pauses_its_partition(Config) ->
    produce(Config, 100),
    Tag = make_ref(),
    Args = #{pid => self(), tag => Tag, init_fail => [0]},
    ok = erlkaf:create_consumer_group(?config(group, Config), [?config(topic, Config)], client_config(Config),
                                      [{auto_offset_reset, earliest}], erlkaf_test_handler, Args),
    Seen = collect(Tag, 75),
    ?assertEqual([1, 2, 3], lists:usort([P || [{P, _} | _] <- maps:values(Seen)])),
    receive {handled, Tag, _, 0, _, _} = M -> ct:fail({paused_partition_consumed, M}) after 1000 -> ok end,
    Inits = fun Count(N) -> receive {init, Tag, _, 0, _, _} -> Count(N + 1) after 0 -> N end end,
    ?assertEqual(1, Inits(0)),
    ok = erlkaf:stop_client(?config(group, Config)).

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
    Seen0 = collect(Tag, 300),
    ok = erlkaf:create_consumer_group(g2, G, [{?config(topic, Config), [{callback_module, erlkaf_test_handler},
                                                                       {callback_args, #{pid => self(), tag => Tag}}]}],
                                      Cfg, [{auto_offset_reset, earliest}]),
    produce(Config, 300, 300),
    Seen = collect(Tag, 600, Seen0, 30000),
    check_order(Seen),
    erlkaf_test_lib:wait_until(fun() ->
        {ok, A1} = erlkaf:assignment(g1), {ok, A2} = erlkaf:assignment(g2),
        length(A1) + length(A2) =:= 4 andalso A1 =/= [] andalso A2 =/= []
    end, 30000),
    ok = erlkaf:stop_client(g1),
    produce(Config, 100, 600),
    Seen2 = collect(Tag, 700, Seen, 30000),
    ?assertEqual(700, map_size(Seen2)),
    Dups = lists:sum([length(L) - 1 || L <- maps:values(Seen2)]),
    ct:pal("duplicates: ~p", [Dups]).

t_seed_consumer_example_receives_everything(Config) ->
    ok = erlkaf_mock:create_topic(?config(mock, Config), <<"benchmark">>, 2, 1),
    {ok, _} = erlkaf:produce_batch(?config(producer, Config), <<"benchmark">>, [integer_to_binary(I) || I <- lists:seq(1, 50)]),
    ok = erlkaf:flush(?config(producer, Config), 10000),
    {ok, Text} = file:read_file(filename:join(?config(data_dir, Config), "seed_consumer_example.erl.txt")),
    Src = binary:replace(Text, <<"broker1:9092,broker2:9092">>, erlkaf_test_lib:bootstrap(Config)),
    File = filename:join(?config(priv_dir, Config), "test_consumer.erl"),
    ok = file:write_file(File, Src),
    Include = filename:dirname(code:which(erlkaf)) ++ "/../include",
    {ok, test_consumer, Bin} = compile:file(File, [binary, return_errors, {i, Include}]),
    {module, test_consumer} = code:load_binary(test_consumer, File, Bin),
    erlang:trace_pattern({test_consumer, handle_message, 2}, true, [local]),
    _ = erlang:trace(new_processes, true, [call]),
    try
        ok = test_consumer:create_consumer(),
        Offsets = [receive {trace, _, call, {test_consumer, handle_message, [#erlkaf_msg{topic = <<"benchmark">>, partition = P, offset = O}, _]}} -> {P, O}
                   after 30000 -> ct:fail(missing_message) end || _ <- lists:seq(1, 50)],
        ?assertEqual(50, length(lists:usort(Offsets)))
    after
        erlang:trace(new_processes, false, [call]),
        erlkaf:stop_client(<<"group_id_here">>)
    end.

t_100000_messages_exactly_once_in_order(Config) ->
    [produce(Config, 10000, I * 10000) || I <- lists:seq(0, 9)],
    Self = self(),
    Tag = make_ref(),
    %% A counting handler (no message per Kafka message to the test process).
    Counter = counters:new(1, []),
    Table = ets:new(seen, [public, bag]),
    persistent_term:put({?MODULE, seen}, {Counter, Table, Self, Tag}),
    ok = erlkaf:create_consumer_group(?config(group, Config), [?config(topic, Config)], client_config(Config),
                                      [{auto_offset_reset, earliest}], ?MODULE, []),
    erlkaf_test_lib:wait_until(fun() -> counters:get(Counter, 1) >= 100000 end, 90000),
    timer:sleep(500),
    ?assertEqual(100000, counters:get(Counter, 1)),
    [begin
         Os = [O || {_, O} <- ets:lookup(Table, P)],
         ?assertEqual(lists:seq(0, 24999), Os)
     end || P <- [0, 1, 2, 3]].

%% Handler used by the 100,000 case: counts and records {Partition, Offset} in order.
init(_T, _P, _O, _Args) -> {ok, persistent_term:get({?MODULE, seen})}.
handle_message(#erlkaf_msg{partition = P, offset = O}, {Counter, Table, _, _} = S) ->
    ets:insert(Table, {P, O}),
    counters:add(Counter, 1, 1),
    {ok, S}.

t_seek_pause_resume_committed_position(Config) ->
    produce(Config, 40),
    Tag = make_ref(),
    G = ?config(group, Config), T = ?config(topic, Config),
    ok = erlkaf:create_consumer_group(G, [T], client_config(Config), [{auto_offset_reset, earliest}],
                                      erlkaf_test_handler, #{pid => self(), tag => Tag}),
    _ = collect(Tag, 40),
    %% Seek partition 0 back to offset 5: offsets 5..9 come again, nothing else.
    ok = erlkaf:seek(G, T, 0, 5),
    Again = [receive {handled, Tag, T, 0, O, _} -> O after 10000 -> ct:fail(no_replay) end || _ <- lists:seq(1, 5)],
    ?assertEqual([5, 6, 7, 8, 9], Again),
    receive {handled, Tag, _, _, _, _} = Extra -> ct:fail({extra, Extra}) after 300 -> ok end,
    %% Pause partition 1: new messages there wait until resume.
    ok = erlkaf:pause(G, T, 1),
    {ok, 1, _} = erlkaf:produce_sync(?config(producer, Config), T, <<"k">>, <<"paused">>, #{partition => 1}),
    receive {handled, Tag, T, 1, _, <<"paused">>} -> ct:fail(delivered_while_paused) after 1000 -> ok end,
    ok = erlkaf:resume(G, T, 1),
    receive {handled, Tag, T, 1, 10, <<"paused">>} -> ok after 10000 -> ct:fail(not_resumed) end,
    ok = erlkaf:commit_offsets(G),
    {ok, Committed} = erlkaf:committed(G),
    ?assertEqual([{T, 0, 10}, {T, 1, 11}, {T, 2, 10}, {T, 3, 10}], lists:sort(Committed)),
    {ok, Positions} = erlkaf:position(G, [{T, 1}]),
    ?assertEqual([{T, 1, 11}], Positions),
    {error, _} = erlkaf:seek(G, T, 99, 0),
    {error, unknown_partition} = erlkaf:pause(G, T, 99),
    {error, undefined_client} = erlkaf:seek(no_such_group, T, 0, 0).

t_cooperative_sticky_two_members(Config) ->
    G = ?config(group, Config),
    Tag = make_ref(),
    Cfg = [{partition_assignment_strategy, 'cooperative-sticky'} | client_config(Config)],
    Topic = [{?config(topic, Config), [{callback_module, erlkaf_test_handler}, {callback_args, #{pid => self(), tag => Tag}}]}],
    ok = erlkaf:create_consumer_group(g1, G, Topic, Cfg, [{auto_offset_reset, earliest}]),
    produce(Config, 200),
    Seen0 = collect(Tag, 200),
    ok = erlkaf:create_consumer_group(g2, G, Topic, Cfg, [{auto_offset_reset, earliest}]),
    erlkaf_test_lib:wait_until(fun() ->
        {ok, A1} = erlkaf:assignment(g1), {ok, A2} = erlkaf:assignment(g2),
        length(A1) + length(A2) =:= 4 andalso A1 =/= [] andalso A2 =/= []
    end, 30000),
    produce(Config, 200, 200),
    Seen = collect(Tag, 400, Seen0, 30000),
    ok = erlkaf:stop_client(g1),
    erlkaf_test_lib:wait_until(fun() -> {ok, A2} = erlkaf:assignment(g2), length(A2) =:= 4 end, 30000),
    produce(Config, 100, 400),
    Seen2 = collect(Tag, 500, Seen, 30000),
    ?assertEqual(500, map_size(Seen2)),
    %% At-least-once: duplicates only from what was in flight at a rebalance.
    Dups = lists:sum([length(L) - 1 || L <- maps:values(Seen2)]),
    ct:pal("duplicates: ~p", [Dups]),
    ?assert(Dups =< 4 * 2000).

t_slow_handler_pauses_its_partition(Config) ->
    produce(Config, 2000),
    Tag = make_ref(),
    G = ?config(group, Config),
    Self = self(),
    %% One partition, slow handler: the worker's mailbox stays bounded by the credit.
    persistent_term:put({?MODULE, slow}, Self),
    ok = erlkaf:create_consumer_group(G, G, [{?config(topic, Config), [{callback_module, erlkaf_slow_handler},
                                                                      {callback_args, Self}]}],
                                      [{max_inflight_batches, 2}, {queued_max_messages_kbytes, 64} | client_config(Config)],
                                      [{auto_offset_reset, earliest}]),
    Workers = [receive {slow_worker, P} -> P after 20000 -> ct:fail(no_worker) end || _ <- lists:seq(1, 4)],
    Max = lists:max([begin timer:sleep(100), lists:max([mailbox(W) || W <- Workers]) end || _ <- lists:seq(1, 20)]),
    ct:pal("largest worker mailbox: ~p batches", [Max]),
    ?assert(Max =< 3),
    _ = Tag.

%% Byte credit: with 1 KiB values (counted ~1.2 KiB each), a slow partition's process
%% holds about max_inflight_bytes of them, not max_inflight_batches whole fetches (all
%% 2000 messages, before the byte credit).
t_slow_handler_holds_at_most_max_inflight_bytes(Config) ->
    V = binary:copy(<<"v">>, 1024),
    {ok, _} = erlkaf:produce_batch(?config(producer, Config), ?config(topic, Config),
                                   [#{value => V, partition => 0} || _ <- lists:seq(1, 2000)]),
    ok = erlkaf:flush(?config(producer, Config), 10000),
    G = ?config(group, Config),
    Self = self(),
    ok = erlkaf:create_consumer_group(G, G, [{?config(topic, Config), [{callback_module, erlkaf_slow_handler},
                                                                      {callback_args, Self}]}],
                                      [{max_inflight_batches, 4}, {max_inflight_bytes, 32768} | client_config(Config)],
                                      [{auto_offset_reset, earliest}]),
    Workers = [receive {slow_worker, P} -> P after 20000 -> ct:fail(no_worker) end || _ <- lists:seq(1, 4)],
    Held = [begin timer:sleep(100), lists:sum([queued_messages(W) || W <- Workers]) end || _ <- lists:seq(1, 20)],
    ct:pal("messages queued in the workers' mailboxes: ~p", [Held]),
    %% 32 KiB of credit: 27 messages, one more, less the batch being handled.
    ?assert(lists:max(Held) =< 28),
    ?assert(lists:max(Held) > 0).

queued_messages(Pid) ->
    case process_info(Pid, messages) of
        {messages, Ms} -> lists:sum([length(Batch) || {erlkaf_batch, _, Batch} <- Ms]);
        undefined -> 0
    end.

mailbox(Pid) ->
    case process_info(Pid, message_queue_len) of
        {message_queue_len, N} -> N;
        undefined -> 0
    end.

t_stop_returns_with_broker_down(Config) ->
    produce(Config, 100),
    Tag = make_ref(),
    G = ?config(group, Config),
    ok = erlkaf:create_consumer_group(G, [?config(topic, Config)],
                                      [{session_timeout_ms, 6000} | client_config(Config)],
                                      [{auto_offset_reset, earliest}], erlkaf_test_handler, #{pid => self(), tag => Tag}),
    _ = collect(Tag, 100),
    ok = erlkaf_mock:broker_down(?config(mock, Config), -1),
    try
        {Us, ok} = timer:tc(fun() -> erlkaf:stop_client(G) end),
        ct:pal("stop with the broker down: ~p ms", [Us div 1000]),
        ?assert(Us < 60000000)
    after
        ok = erlkaf_mock:broker_up(?config(mock, Config), -1)
    end.

t_error_callback_gets_consume_errors(Config) ->
    Self = self(),
    G = ?config(group, Config),
    Tag = make_ref(),
    %% auto_offset_reset=error turns "no committed offset" into a consume error.
    ok = erlkaf:create_consumer_group(G, [?config(topic, Config)],
                                      [{error_callback, fun(Id, E) -> Self ! {error_cb, Id, E} end} | client_config(Config)],
                                      [{auto_offset_reset, error}], erlkaf_test_handler, #{pid => self(), tag => Tag}),
    produce(Config, 4),
    receive
        {error_cb, G, {consume_error, _T, _P, Code, _Reason}} -> ct:pal("consume error: ~p", [Code]);
        {error_cb, G, {error, Code, Reason}} -> ct:pal("error: ~p ~ts", [Code, Reason])
    after 20000 -> ct:fail(no_error_callback)
    end.

t_long_handler_keeps_group_membership(Config) ->
    %% A handler busy for longer than session_timeout_ms (6 s) but within
    %% max_poll_interval_ms: the pump keeps polling, the member stays, nothing is revoked.
    produce(Config, 4),
    G = ?config(group, Config),
    Self = self(),
    persistent_term:put({?MODULE, long}, Self),
    ok = erlkaf:create_consumer_group(G, G, [{?config(topic, Config), [{callback_module, erlkaf_long_handler},
                                                                      {callback_args, Self}]}],
                                      [{max_poll_interval_ms, 60000} | client_config(Config)],
                                      [{auto_offset_reset, earliest}]),
    Handled = [receive {long_handled, P, O} -> {P, O} after 30000 -> ct:fail(missing) end || _ <- lists:seq(1, 4)],
    ?assertEqual(4, length(lists:usort(Handled))),
    Inits = length([x || {long_init, _} <- flush_mailbox()]),
    ?assertEqual(4, Inits).

flush_mailbox() ->
    receive M -> [M | flush_mailbox()] after 0 -> [] end.
