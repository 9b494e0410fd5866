%%% Transactions on the embedded broker: committed and aborted transactions as a
%%% read_committed consumer sees them, consume-transform-produce with the group's offsets
%%% in the transaction, and a fenced producer stopping with a clear reason.
-module(erlkaf_txn_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include("erlkaf.hrl").

-compile([export_all, nowarn_export_all]).

suite() -> [{timetrap, {seconds, 90}}].
all() -> erlkaf_test_lib:all_t(?MODULE).

init_per_testcase(Case, Config0) ->
    Config = erlkaf_test_lib:start_mock([{brokers, 3} | Config0]),
    T = erlkaf_test_lib:unique_topic(Case),
    ok = erlkaf_mock:create_topic(?config(mock, Config), T, 2, 3),
    ok = erlkaf_mock:create_topic(?config(mock, Config), <<T/binary, "-out">>, 2, 3),
    [{topic, T}, {txn_id, atom_to_binary(Case)} | Config].

end_per_testcase(_Case, Config) ->
    [erlkaf:stop_client(C) || C <- [txp, txp2, plain, txg, rc]],
    erlkaf_test_lib:stop_mock(Config).

txn_producer(Id, Config, Extra) ->
    Self = self(),
    ok = erlkaf:create_producer(Id, [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)},
                                     {transactional_id, ?config(txn_id, Config)},
                                     {error_callback, fun(C, E) -> Self ! {client_error, C, E}, ok end} | Extra]),
    ok = erlkaf:init_transactions(Id).

read_committed(Config, Topic, Tag) ->
    ok = erlkaf:create_consumer_group(rc, <<Topic/binary, "-rc">>,
                                      [{Topic, [{callback_module, erlkaf_test_handler},
                                                {callback_args, #{pid => self(), tag => Tag}}]}],
                                      [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)},
                                       {fetch_wait_max_ms, 10}, {isolation_level, read_committed}],
                                      [{auto_offset_reset, earliest}]).

values(Tag, N) ->
    [receive {handled, Tag, _, _, _, V} -> V after 20000 -> ct:fail({missing, N - I}) end || I <- lists:seq(1, N)].

%% The calls and their errors. (librdkafka's mock neither hides aborted messages from
%% read_committed consumers, nor keeps offsets committed in a transaction, nor fences:
%% those are tested against noida-db in test/brokers/erlkaf_brokers_SUITE.)
t_transaction_calls_and_errors(Config) ->
    T = ?config(topic, Config),
    txn_producer(txp, Config, []),
    ok = erlkaf:begin_transaction(txp),
    {error, {state, #{fatal := false, abortable := false, retriable := false, message := M}}} = erlkaf:begin_transaction(txp),
    ?assert(is_binary(M)),
    {ok, _} = erlkaf:produce_batch(txp, T, [<<"a">>, <<"b">>]),
    ok = erlkaf:commit_transaction(txp),
    ok = erlkaf:begin_transaction(txp),
    {ok, _} = erlkaf:produce(txp, T, <<"k">>, <<"aborted">>),
    ok = erlkaf:abort_transaction(txp),
    {error, {state, #{fatal := false}}} = erlkaf:commit_transaction(txp),
    {error, {badarg, timeout}} = erlkaf:commit_transaction(txp, -1),
    %% Not a transactional producer.
    ok = erlkaf:create_producer(plain, [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)}]),
    {error, {not_configured, #{fatal := false}}} = erlkaf:begin_transaction(plain),
    {error, undefined_client} = erlkaf:begin_transaction(no_such_client).
