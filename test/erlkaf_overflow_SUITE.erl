%%% A full librdkafka queue: `drop_records' refuses at once (and counts), and
%%% `block_calling_process' waits for room up to its timeout, never inside the NIF.
-module(erlkaf_overflow_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include("erlkaf.hrl").

-compile([export_all, nowarn_export_all]).

suite() -> [{timetrap, {seconds, 60}}].
all() -> erlkaf_test_lib:all_t(?MODULE).

init_per_testcase(Case, Config0) ->
    Config = erlkaf_test_lib:start_mock(Config0),
    ok = erlkaf_mock:broker_down(?config(mock, Config), -1),
    [{client, Case}, {topic, erlkaf_test_lib:unique_topic(Case)} | Config].

end_per_testcase(Case, Config) ->
    erlkaf:stop_client(Case),
    erlkaf_test_lib:stop_mock(Config).

small_queue(Strategy, Extra) ->
    [{queue_buffering_max_messages, 10}, {queue_buffering_overflow_strategy, Strategy},
     {stop_flush_timeout_ms, 100} | Extra].

t_drop_records_refuses_at_once_and_counts(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    erlkaf_test_lib:reporting_producer(C, Config, small_queue(drop_records, [])),
    Refs = [begin {ok, R} = erlkaf:produce(C, T, 0, undefined, <<"v">>, []), R end || _ <- lists:seq(1, 10)],
    {Us, {error, queue_full}} = timer:tc(fun() -> erlkaf:produce(C, T, 0, undefined, <<"v">>, []) end),
    %% "At once": far below the 30 s that block_calling_process would wait (no tight
    %% bound: the machine is shared).
    ?assert(Us < 5000000),
    {error, {queue_full, [], Rest}} = erlkaf:produce_batch(C, T, [<<"a">>, <<"b">>]),
    ?assertEqual([<<"a">>, <<"b">>], Rest),
    %% outq_len counts librdkafka's pending requests too, not only the 10 messages.
    {ok, #{dropped := 3, outq_len := OutQ}} = erlkaf:producer_info(C),
    ?assert(OutQ >= 10),
    %% The 10 accepted ones are purged on stop, each with an error report.
    ok = erlkaf:stop_client(C),
    Got = erlkaf_test_lib:collect_reports(C, Refs),
    [{error, purge_queue} = S || {S, _} <- maps:values(Got)].

t_block_calling_process_gives_up_after_timeout(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    erlkaf_test_lib:reporting_producer(C, Config, small_queue(block_calling_process,
                                                              [{queue_buffering_overflow_timeout_ms, 300}])),
    {ok, Refs} = erlkaf:produce_batch(C, T, lists:duplicate(10, <<"v">>)),
    {Us, {error, queue_full}} = timer:tc(fun() -> erlkaf:produce(C, T, undefined, <<"v">>) end),
    ?assert(Us >= 290000),
    %% A batch that fills the queue part-way says which messages were taken.
    ok = erlkaf:stop_client(C),
    _ = erlkaf_test_lib:collect_reports(C, Refs).

t_block_calling_process_resumes_when_room_frees(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config), Mock = ?config(mock, Config),
    erlkaf_test_lib:reporting_producer(C, Config, small_queue(block_calling_process, [])),
    Scheduler = self(),
    spawn_link(fun() -> timer:sleep(500), ok = erlkaf_mock:broker_up(Mock, -1), Scheduler ! up end),
    {Us, {ok, Refs}} = timer:tc(fun() -> erlkaf:produce_batch(C, T, [integer_to_binary(I) || I <- lists:seq(1, 200)]) end),
    receive up -> ok end,
    ?assert(Us >= 400000),
    ?assertEqual(200, length(Refs)),
    Got = erlkaf_test_lib:collect_reports(C, Refs),
    ?assertEqual([ok], lists:usort([S || {S, _} <- maps:values(Got)])).

t_partial_batch_under_drop_records(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    erlkaf_test_lib:reporting_producer(C, Config, small_queue(drop_records, [])),
    Msgs = [integer_to_binary(I) || I <- lists:seq(1, 25)],
    {error, {queue_full, Refs, Rest}} = erlkaf:produce_batch(C, T, Msgs),
    ?assertEqual(10, length(Refs)),
    ?assertEqual(lists:nthtail(10, Msgs), Rest),
    ok = erlkaf:stop_client(C),
    Got = erlkaf_test_lib:collect_reports(C, Refs),
    ?assertEqual(10, maps:size(Got)).

%% The same with refs => false: the accepted count, and the queue-full wait of
%% block_calling_process sees the progress a count shows.
t_counts_without_refs_under_a_full_queue(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    erlkaf_test_lib:reporting_producer(C, Config, small_queue(drop_records, [])),
    Msgs = [integer_to_binary(I) || I <- lists:seq(1, 25)],
    {error, {queue_full, 10, Rest}} = erlkaf:produce_batch(C, T, Msgs, #{refs => false}),
    ?assertEqual(lists:nthtail(10, Msgs), Rest),
    ok = erlkaf:stop_client(C),
    Mock = ?config(mock, Config),
    erlkaf_test_lib:reporting_producer(C, Config, small_queue(block_calling_process, [])),
    Scheduler = self(),
    spawn_link(fun() -> timer:sleep(500), ok = erlkaf_mock:broker_up(Mock, -1), Scheduler ! up end),
    {ok, 200} = erlkaf:produce_batch(C, T, [integer_to_binary(I) || I <- lists:seq(1, 200)], #{refs => false}),
    receive up -> ok end.
