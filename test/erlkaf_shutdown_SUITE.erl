%%% Stopping: every accepted message gets exactly one report (delivered, or purged with
%%% an error), nothing blocks, and no native object is left behind.
-module(erlkaf_shutdown_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include("erlkaf.hrl").

-compile([export_all, nowarn_export_all]).

suite() -> [{timetrap, {seconds, 90}}].
all() -> erlkaf_test_lib:all_t(?MODULE).

init_per_testcase(Case, Config0) ->
    Config = erlkaf_test_lib:start_mock(Config0),
    [{client, Case}, {topic, erlkaf_test_lib:unique_topic(Case)} | Config].

end_per_testcase(Case, Config) ->
    erlkaf:stop_client(Case),
    erlkaf_test_lib:stop_mock(Config).

t_stop_flushes_messages_in_flight(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    erlkaf_test_lib:reporting_producer(C, Config, [{linger_ms, 50}]),
    {ok, Refs} = erlkaf:produce_batch(C, T, lists:duplicate(5000, <<"v">>)),
    ok = erlkaf:stop_client(C),
    %% Every report was handed to the callback before stop_client returned.
    Got = [receive {dr, C, R, S, _} -> S after 0 -> missing end || R <- Refs],
    ?assertEqual([ok], lists:usort(Got)).

t_stop_with_broker_down_purges_with_error_reports(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    ok = erlkaf_mock:broker_down(?config(mock, Config), -1),
    erlkaf_test_lib:reporting_producer(C, Config, [{stop_flush_timeout_ms, 300}]),
    {ok, Refs} = erlkaf:produce_batch(C, T, lists:duplicate(1000, <<"v">>)),
    {Us, ok} = timer:tc(fun() -> erlkaf:stop_client(C) end),
    ?assert(Us < 15000000),
    Got = [receive {dr, C, R, S, _} -> S after 0 -> missing end || R <- Refs],
    ?assertEqual([{error, purge_queue}], lists:usort(Got)),
    receive {dr, C, _, _, _} = Extra -> ct:fail({duplicate, Extra}) after 100 -> ok end.

t_no_native_object_left_after_stop(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    Before = erlkaf_nif:nif_counters(),
    erlkaf_test_lib:reporting_producer(C, Config, []),
    {ok, _} = erlkaf:produce_batch(C, T, lists:duplicate(3000, <<"v">>)),
    ok = erlkaf:stop_client(C),
    %% No garbage collection needed: stop releases the native client itself, even while
    %% this process still holds a reference to its resource.
    Live = maps:get(live_clients, Before),
    erlkaf_test_lib:wait_until(fun() ->
        #{live_clients := L, live_batches := B, outstanding := O, reapers := R} = erlkaf_nif:nif_counters(),
        L =< Live andalso B =:= 0 andalso O =:= 0 andalso R =:= 0
    end, 10000).

t_killed_producer_process_is_restarted_and_old_client_torn_down(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    erlkaf_test_lib:reporting_producer(C, Config, []),
    {ok, producer, _, Pid, _} = erlkaf_registry:lookup(C),
    exit(Pid, kill),
    erlkaf_test_lib:wait_until(fun() ->
        case erlkaf_registry:lookup(C) of
            {ok, producer, _, Pid2, _} -> Pid2 =/= Pid;
            _ -> false
        end
    end, 5000),
    %% The registry entry of the dead process may linger until the new one replaced it.
    {ok, _, _} = erlkaf:produce_sync(C, T, <<"k">>, <<"v">>).

t_application_stop_with_live_clients(Config) ->
    T = ?config(topic, Config),
    erlkaf_test_lib:reporting_producer(app_stop1, Config, []),
    erlkaf_test_lib:reporting_producer(app_stop2, Config, []),
    {ok, R1} = erlkaf:produce(app_stop1, T, <<"k">>, <<"v">>),
    {ok, R2} = erlkaf:produce(app_stop2, T, <<"k">>, <<"v">>),
    ok = erlkaf:stop(),
    _ = erlkaf_test_lib:collect_reports(app_stop1, [R1]),
    _ = erlkaf_test_lib:collect_reports(app_stop2, [R2]),
    {error, undefined_client} = erlkaf:produce(app_stop1, T, <<"k">>, <<"v">>),
    ok = erlkaf:start().

t_flush_times_out_with_broker_down(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    ok = erlkaf_mock:broker_down(?config(mock, Config), -1),
    erlkaf_test_lib:reporting_producer(C, Config, [{stop_flush_timeout_ms, 100}]),
    {ok, _} = erlkaf:produce(C, T, <<"k">>, <<"v">>),
    {Us, {error, timeout}} = timer:tc(fun() -> erlkaf:flush(C, 200) end),
    ?assert(Us >= 190000).

%% produce/4 calls share open batches (erlkaf_core::open): every report still carries its
%% own ref and value, and the batches are released once idle, without a stop.
t_single_messages_release_their_batches_when_idle(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    erlkaf_test_lib:reporting_producer(C, Config, []),
    Parent = self(),
    %% 4 processes x 150 messages: several open batches, some filled, some left open;
    %% a few values above the 64 KiB batch limit close batches early.
    Pids = [spawn_link(fun() ->
                Sent = [begin
                            V = case I rem 50 of
                                    0 -> binary:copy(<<P>>, 70000);
                                    _ -> <<P, I:32>>
                                end,
                            {ok, R} = erlkaf:produce(C, T, <<"k">>, V),
                            {R, V}
                        end || I <- lists:seq(1, 150)],
                Parent ! {sent, self(), Sent}
            end) || P <- lists:seq(1, 4)],
    Sent = lists:append([receive {sent, Pid, S} -> S end || Pid <- Pids]),
    Got = erlkaf_test_lib:collect_reports(C, [R || {R, _} <- Sent]),
    [{ok, V} = {S, M#erlkaf_msg.value} || {R, V} <- Sent, {S, M} <- [maps:get(R, Got)]],
    erlkaf_test_lib:wait_until(fun() ->
        #{live_batches := B, outstanding := O} = erlkaf_nif:nif_counters(),
        B =:= 0 andalso O =:= 0
    end, 5000).

%% A native producer whose resource is garbage collected without a stop, and whose owner
%% was killed while it produced: torn down off the schedulers, its messages released.
t_resource_collected_without_stop_and_owner_killed_mid_produce(Config) ->
    T = ?config(topic, Config),
    Base = maps:get(live_clients, erlkaf_nif:nif_counters()),
    Bootstrap = erlkaf_test_lib:bootstrap(Config),
    Parent = self(),
    Pid = spawn(fun() ->
        {ok, Res} = erlkaf_nif:producer_new(<<"gc_test">>, [{<<"bootstrap.servers">>, Bootstrap}, {<<"linger.ms">>, <<"50">>}], self(), all),
        Parent ! started,
        Loop = fun L(I) ->
            _ = erlkaf_nif:producer_produce(Res, T, [{-1, undefined, integer_to_binary(I), undefined, 0}], owner, true),
            L(I + 1)
        end,
        Loop(0)
    end),
    receive started -> ok after 5000 -> ct:fail(producer_new_failed) end,
    timer:sleep(200),
    exit(Pid, kill),
    erlkaf_test_lib:wait_until(fun() ->
        erlkaf_test_lib:gc_all(),
        #{live_clients := L, live_batches := B, outstanding := O, reapers := R} = erlkaf_nif:nif_counters(),
        L =< Base andalso B =:= 0 andalso O =:= 0 andalso R =:= 0
    end, 20000).

%% stop_client while 8 processes keep calling the produce/4 NIF with the client's
%% resource (a path that takes no client-wide lock: teardown is ordered by the per-thread
%% shard locks): every accepted message gets exactly one report, the calls end refused,
%% and nothing is left behind.
t_stop_while_processes_produce(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    erlkaf_test_lib:reporting_producer(C, Config, []),
    {ok, producer, Res, _, _} = erlkaf_registry:lookup(C),
    Parent = self(),
    Stopping = atomics:new(1, []),
    Loop = fun L(I, Acc) ->
        case erlkaf_nif:producer_send(Res, T, -1, undefined, integer_to_binary(I), undefined, 0) of
            {ok, R} -> L(I + 1, [R | Acc]);
            retry ->
                %% Refused: a full queue before the stop (wait), or the client stopping.
                case atomics:get(Stopping, 1) of
                    0 -> timer:sleep(1), L(I, Acc);
                    _ -> Acc
                end
        end
    end,
    Pids = [spawn_link(fun() -> Parent ! {accepted, self(), Loop(0, [])} end) || _ <- lists:seq(1, 8)],
    timer:sleep(300),
    atomics:put(Stopping, 1, 1),
    ok = erlkaf:stop_client(C),
    Accepted = lists:append([receive {accepted, Pid, A} -> A after 10000 -> ct:fail(producer_stuck) end || Pid <- Pids]),
    ?assert(length(Accepted) > 1000),
    Got = erlkaf_test_lib:collect_reports(C, Accepted),
    ?assertEqual(length(Accepted), map_size(Got)),
    receive {dr, C, _, _, _} = Extra -> ct:fail({unexpected_report, Extra}) after 200 -> ok end,
    erlkaf_test_lib:wait_until(fun() ->
        #{live_batches := B, outstanding := O} = erlkaf_nif:nif_counters(),
        B =:= 0 andalso O =:= 0
    end, 10000).
