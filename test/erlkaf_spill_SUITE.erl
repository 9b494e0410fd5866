%%% The ordered disk spill (`queue_buffering_overflow_strategy' = `local_disk_queue'),
%%% with the broker down, then up: nothing dropped, order kept, every message reported
%%% once; the spill survives a restart of the client; its size limit is a clear error.
-module(erlkaf_spill_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include("erlkaf.hrl").

-compile([export_all, nowarn_export_all]).

suite() -> [{timetrap, {seconds, 120}}].
all() -> erlkaf_test_lib:all_t(?MODULE).

init_per_testcase(Case, Config0) ->
    Config = erlkaf_test_lib:start_mock(Config0),
    T = erlkaf_test_lib:unique_topic(Case),
    ok = erlkaf_mock:create_topic(?config(mock, Config), T, 2, 1),
    Dir = filename:join(?config(priv_dir, Config), atom_to_list(Case)),
    [{topic, T}, {dir, Dir} | Config].

end_per_testcase(_Case, Config) ->
    erlkaf:stop_client(spill_p),
    erlkaf_test_lib:stop_mock(Config).

producer(Config, Extra) ->
    erlkaf_test_lib:reporting_producer(spill_p, Config, [{queue_buffering_overflow_strategy, local_disk_queue},
                                                         {local_disk_queue_dir, ?config(dir, Config)},
                                                         {queue_buffering_max_messages, 100},
                                                         {linger_ms, 1} | Extra]).

%% Reports of Refs: every one ok, and per partition the offsets follow the sending order.
check_in_order(Sent) ->
    Got = erlkaf_test_lib:collect_reports(spill_p, [R || {R, _} <- Sent]),
    ByPart = lists:foldl(fun({R, V}, Acc) ->
        {ok, #erlkaf_msg{partition = P, offset = O, value = V}} = maps:get(R, Got),
        maps:update_with(P, fun(L) -> [O | L] end, [O], Acc)
    end, #{}, Sent),
    maps:foreach(fun(_P, Os) ->
        InSendOrder = lists:reverse(Os),
        ?assertEqual(lists:sort(InSendOrder), InSendOrder)
    end, ByPart),
    receive {dr, spill_p, _, _, _} = Extra -> ct:fail({duplicate_report, Extra}) after 300 -> ok end.

t_spill_keeps_order_while_the_broker_is_down(Config) ->
    T = ?config(topic, Config), Mock = ?config(mock, Config),
    ok = erlkaf_mock:broker_down(Mock, -1),
    producer(Config, []),
    Sent1 = [begin V = integer_to_binary(I), {ok, R} = erlkaf:produce(spill_p, T, <<"k">>, V), {R, V} end
             || I <- lists:seq(1, 1500)],
    {ok, Refs} = erlkaf:produce_batch(spill_p, T, [#{value => integer_to_binary(I), partition => I rem 2}
                                                   || I <- lists:seq(1501, 3000)]),
    Sent = Sent1 ++ lists:zip(Refs, [integer_to_binary(I) || I <- lists:seq(1501, 3000)]),
    {Spill, _} = erlkaf_spill:files(?config(dir, Config), spill_p),
    ?assert(filelib:file_size(Spill) > 0),
    ok = erlkaf_mock:broker_up(Mock, -1),
    check_in_order(Sent),
    %% Drained: new messages go straight to librdkafka again, and the file is emptied.
    erlkaf_test_lib:wait_until(fun() -> filelib:file_size(Spill) =:= 0 end, 5000),
    {ok, R} = erlkaf:produce(spill_p, T, <<"k">>, <<"after">>),
    [ok] = [S || {S, _} <- maps:values(erlkaf_test_lib:collect_reports(spill_p, [R]))].

%% refs => false through the spill: counts, and every message reported once.
t_spill_counts_without_refs(Config) ->
    T = ?config(topic, Config), Mock = ?config(mock, Config),
    ok = erlkaf_mock:broker_down(Mock, -1),
    producer(Config, []),
    {ok, 300} = erlkaf:produce_batch(spill_p, T, [integer_to_binary(I) || I <- lists:seq(1, 300)], #{refs => false}),
    ok = erlkaf_mock:broker_up(Mock, -1),
    Values = [receive {dr, spill_p, _, ok, #erlkaf_msg{value = V}} -> V after 20000 -> ct:fail(missing_report) end
              || _ <- lists:seq(1, 300)],
    ?assertEqual(lists:seq(1, 300), lists:sort([binary_to_integer(V) || V <- Values])),
    receive {dr, spill_p, _, _, _} = Extra -> ct:fail({duplicate_report, Extra}) after 300 -> ok end.

t_spill_survives_a_restart(Config) ->
    T = ?config(topic, Config), Mock = ?config(mock, Config),
    ok = erlkaf_mock:broker_down(Mock, -1),
    producer(Config, [{stop_flush_timeout_ms, 200}]),
    Before = erlang:system_time(millisecond),
    Sent = [begin V = integer_to_binary(I), {ok, R} = erlkaf:produce(spill_p, T, <<"k">>, V), {R, V} end
            || I <- lists:seq(1, 600)],
    ok = erlkaf:stop_client(spill_p),
    %% The ones librdkafka held are purged (error reports); the spilled ones wait on disk.
    Purged = [R || {R, _} <- Sent, receive {dr, spill_p, R, {error, purge_queue}, _} -> true after 0 -> false end],
    ?assert(length(Purged) > 0 andalso length(Purged) < 600),
    %% Spilled records carry the time they were produced (their CreateTime), not 0.
    {ok, Left} = erlkaf_spill:open(?config(dir, Config), spill_p, 1 bsl 30),
    Stamps = [Ts || {{_, _, _, _, _, _, Ts}, _} <- erlkaf_spill:read(Left, 1000)],
    ok = erlkaf_spill:close(Left),
    ?assertEqual(600 - length(Purged), length(Stamps)),
    ?assertEqual([], [Ts || Ts <- Stamps, Ts < Before orelse Ts > erlang:system_time(millisecond)]),
    %% A torn record at the end (as if the VM died mid-append) is ignored.
    {Spill, _} = erlkaf_spill:files(?config(dir, Config), spill_p),
    ok = file:write_file(Spill, <<0, 0, 1, 0, 1, 2, 3>>, [append]),
    ok = erlkaf_mock:broker_up(Mock, -1),
    producer(Config, []),
    check_in_order([S || {R, _} = S <- Sent, not lists:member(R, Purged)]).

%% A spill written while MsgRefs were Erlang references: its records are produced, each
%% reported under a fresh integer MsgRef (not refused as malformed).
t_spill_with_reference_msg_refs_is_produced(Config) ->
    T = ?config(topic, Config),
    {ok, Spill0} = erlkaf_spill:open(?config(dir, Config), spill_p, 1 bsl 30),
    Now = erlang:system_time(millisecond),
    Records = [{T, make_ref(), -1, undefined, integer_to_binary(I), undefined, Now} || I <- lists:seq(1, 5)],
    {ok, Spill1, 5} = erlkaf_spill:append(Spill0, Records),
    ok = erlkaf_spill:close(Spill1),
    producer(Config, []),
    Got = [receive {dr, spill_p, R, ok, #erlkaf_msg{value = V}} -> {R, V} after 20000 -> ct:fail(missing_report) end
           || _ <- lists:seq(1, 5)],
    ?assertEqual([<<"1">>, <<"2">>, <<"3">>, <<"4">>, <<"5">>], lists:sort([V || {_, V} <- Got])),
    ?assert(lists:all(fun({R, _}) -> is_integer(R) andalso R > 0 end, Got)),
    ?assertEqual(5, length(lists:usort([R || {R, _} <- Got]))).

t_spill_size_limit_is_a_clear_error(Config) ->
    T = ?config(topic, Config),
    ok = erlkaf_mock:broker_down(?config(mock, Config), -1),
    producer(Config, [{local_disk_queue_max_bytes, 20000}]),
    Msgs = [binary:copy(<<"x">>, 100) || _ <- lists:seq(1, 1000)],
    {error, {local_disk_queue_full, Accepted, NotAccepted}} = erlkaf:produce_batch(spill_p, T, Msgs),
    ct:pal("accepted ~p (librdkafka's 100 + the spill), refused ~p", [length(Accepted), length(NotAccepted)]),
    ?assert(length(Accepted) > 100 andalso length(Accepted) < 400),
    ?assertEqual(1000, length(Accepted) + length(NotAccepted)),
    {error, local_disk_queue_full} = erlkaf:produce(spill_p, T, <<"k">>, binary:copy(<<"y">>, 30000)),
    {error, {options, {local_disk_queue_max_bytes, 0}}} =
        erlkaf:create_producer(bad, [{queue_buffering_overflow_strategy, local_disk_queue}, {local_disk_queue_max_bytes, 0}]).
