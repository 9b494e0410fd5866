%%% The embedded broker: lifecycle (owner death destroys it) and fault injection that
%%% clients really see.
-module(erlkaf_mock_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include("erlkaf.hrl").

-compile([export_all, nowarn_export_all]).

suite() -> [{timetrap, {seconds, 60}}].
all() -> erlkaf_test_lib:all_t(?MODULE).

init_per_suite(Config) -> ok = erlkaf:start(), Config.
end_per_suite(_Config) -> ok.

end_per_testcase(Case, _Config) ->
    erlkaf:stop_client(Case).

producer(Case, Mock, Extra) ->
    ok = erlkaf:create_producer(Case, [{bootstrap_servers, erlkaf_mock:bootstrap_servers(Mock)},
                                       {linger_ms, 1} | Extra]).

t_start_options_and_bootstrap(_Config) ->
    {ok, M} = erlkaf_mock:start(#{brokers => 3, topics => [{<<"three">>, 6, 3}]}),
    B = erlkaf_mock:bootstrap_servers(M),
    ?assertMatch([_, _, _], binary:split(B, <<",">>, [global])),
    [<<"127.0.0.1:", _/binary>> | _] = binary:split(B, <<",">>, [global]),
    ok = erlkaf_mock:create_topic(M, "another", 2, 1),
    ok = erlkaf_mock:stop(M),
    ok = erlkaf_mock:stop(M),
    {error, {options, nope}} = erlkaf_mock:start(nope),
    {error, {mock_cluster, _}} = erlkaf_mock:start(#{brokers => 0}).

t_owner_death_destroys_the_cluster(_Config) ->
    Before = maps:get(live_mocks, erlkaf_nif:nif_counters()),
    Self = self(),
    Owner = spawn(fun() -> {ok, M} = erlkaf_mock:start(), Self ! {mock, M}, receive stop -> ok end end),
    M = receive {mock, X} -> X end,
    Mon = erlang:monitor(process, M),
    ?assertEqual(Before + 1, maps:get(live_mocks, erlkaf_nif:nif_counters())),
    Owner ! stop,
    receive {'DOWN', Mon, process, M, _} -> ok after 5000 -> ct:fail(mock_survived_owner) end,
    erlkaf_test_lib:wait_until(fun() -> maps:get(live_mocks, erlkaf_nif:nif_counters()) =:= Before end, 5000).

t_broker_down_then_up(_Config) ->
    {ok, M} = erlkaf_mock:start(#{topics => [{<<"bd">>, 1, 1}]}),
    producer(?FUNCTION_NAME, M, []),
    {ok, 0, 0} = erlkaf:produce_sync(?FUNCTION_NAME, <<"bd">>, <<"k">>, <<"v">>),
    ok = erlkaf_mock:broker_down(M, 1),
    {error, timeout} = erlkaf:produce_sync(?FUNCTION_NAME, <<"bd">>, <<"k">>, <<"v">>, #{timeout => 500}),
    ok = erlkaf_mock:broker_up(M, 1),
    {ok, 0, _} = erlkaf:produce_sync(?FUNCTION_NAME, <<"bd">>, <<"k">>, <<"v">>, #{timeout => 20000}),
    erlkaf:stop_client(?FUNCTION_NAME),
    ok = erlkaf_mock:stop(M).

t_push_request_errors_are_retried_or_reported(_Config) ->
    {ok, M} = erlkaf_mock:start(#{topics => [{<<"pe">>, 1, 1}]}),
    producer(?FUNCTION_NAME, M, [{retry_backoff_ms, 10}]),
    {ok, 0, 0} = erlkaf:produce_sync(?FUNCTION_NAME, <<"pe">>, <<"k">>, <<"v">>),
    %% Retriable errors: librdkafka retries and the message is delivered.
    ok = erlkaf_mock:push_request_errors(M, produce, [not_leader_for_partition, request_timed_out]),
    {ok, 0, 1} = erlkaf:produce_sync(?FUNCTION_NAME, <<"pe">>, <<"k">>, <<"v">>),
    %% A permanent error reaches the caller as its name.
    ok = erlkaf_mock:push_request_errors(M, 0, [msg_size_too_large]),
    {error, msg_size_too_large} = erlkaf:produce_sync(?FUNCTION_NAME, <<"pe">>, <<"k">>, <<"v">>),
    {error, {unknown_error, no_such_error}} = erlkaf_mock:push_request_errors(M, 0, [no_such_error]),
    ok = erlkaf_mock:clear_request_errors(M, produce),
    erlkaf:stop_client(?FUNCTION_NAME),
    ok = erlkaf_mock:stop(M).

t_rtt_delays_delivery(_Config) ->
    {ok, M} = erlkaf_mock:start(#{topics => [{<<"rtt">>, 1, 1}]}),
    producer(?FUNCTION_NAME, M, []),
    {ok, 0, 0} = erlkaf:produce_sync(?FUNCTION_NAME, <<"rtt">>, <<"k">>, <<"v">>),
    ok = erlkaf_mock:set_rtt(M, -1, 300),
    {Us, {ok, 0, 1}} = timer:tc(fun() -> erlkaf:produce_sync(?FUNCTION_NAME, <<"rtt">>, <<"k">>, <<"v">>) end),
    ?assert(Us >= 250000),
    ok = erlkaf_mock:set_rtt(M, -1, 0),
    erlkaf:stop_client(?FUNCTION_NAME),
    ok = erlkaf_mock:stop(M).

t_partition_leader_moves(_Config) ->
    {ok, M} = erlkaf_mock:start(#{brokers => 3, topics => [{<<"lm">>, 2, 3}]}),
    producer(?FUNCTION_NAME, M, [{topic_metadata_refresh_interval_ms, 100}]),
    {ok, 0, 0} = erlkaf:produce_sync(?FUNCTION_NAME, <<"lm">>, <<"k">>, <<"v">>, #{partition => 0}),
    ok = erlkaf_mock:set_partition_leader(M, <<"lm">>, 0, 3),
    ok = erlkaf_mock:set_partition_leader(M, <<"lm">>, 1, 2),
    {ok, 0, 1} = erlkaf:produce_sync(?FUNCTION_NAME, <<"lm">>, <<"k">>, <<"v">>, #{partition => 0}),
    {ok, 1, 0} = erlkaf:produce_sync(?FUNCTION_NAME, <<"lm">>, <<"k">>, <<"v">>, #{partition => 1}),
    erlkaf:stop_client(?FUNCTION_NAME),
    ok = erlkaf_mock:stop(M).

t_group_rebalance_delay_setting(_Config) ->
    {ok, M} = erlkaf_mock:start(#{group_initial_rebalance_delay_ms => 0}),
    ok = erlkaf_mock:set_group_initial_rebalance_delay(M, 50),
    ok = erlkaf_mock:stop(M),
    {error, client_stopped} = erlkaf_nif_call_after_stop(M).

erlkaf_nif_call_after_stop(M) ->
    try erlkaf_mock:set_rtt(M, 1, 1)
    catch exit:{noproc, _} -> {error, client_stopped};
          exit:{normal, _} -> {error, client_stopped}
    end.
