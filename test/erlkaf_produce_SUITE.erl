%%% Producing against the embedded broker: every accepted message gets exactly one
%%% delivery report carrying its MsgRef, partition, offset and content.
-module(erlkaf_produce_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include("erlkaf.hrl").

-compile([export_all, nowarn_export_all]).

suite() -> [{timetrap, {seconds, 60}}].
all() -> erlkaf_test_lib:all_t(?MODULE).

init_per_suite(Config) -> erlkaf_test_lib:start_mock(Config).
end_per_suite(Config) -> erlkaf_test_lib:stop_mock(Config).

init_per_testcase(Case, Config) ->
    erlkaf_test_lib:reporting_producer(Case, Config, []),
    [{client, Case}, {topic, erlkaf_test_lib:unique_topic(Case)} | Config].

end_per_testcase(Case, _Config) ->
    erlkaf:stop_client(Case),
    erlkaf:stop_client(client1),
    %% The second producer of t_msg_refs_are_unique_integers_across_producers.
    erlkaf:stop_client(t_msg_refs_other_producer),
    erlkaf:stop_client(t_sticky_producer),
    ok.

t_produce_4_reports_partition_offset_and_message(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    {ok, Ref} = erlkaf:produce(C, T, <<"k">>, <<"v">>),
    ?assert(is_integer(Ref) andalso Ref > 0),
    #{Ref := {ok, Msg}} = erlkaf_test_lib:collect_reports(C, [Ref]),
    #erlkaf_msg{topic = T, key = <<"k">>, value = <<"v">>, headers = undefined,
                partition = P, offset = 0, timestamp = {_, _}} = Msg,
    ?assert(P >= 0 andalso P < 4).

%% MsgRefs are positive integers, distinct across producers and producing processes
%% (each scheduler takes blocks of them), each report carrying its message's; they start
%% from the wall clock of the VM's first (in microseconds), above an earlier VM's.
t_msg_refs_are_unique_integers_across_producers(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    Other = t_msg_refs_other_producer,
    erlkaf_test_lib:reporting_producer(Other, Config, []),
    Self = self(),
    Produce = fun(Client, I) ->
        Single = [begin {ok, R} = erlkaf:produce(Client, T, undefined, integer_to_binary(I)), R end
                  || _ <- lists:seq(1, 500)],
        {ok, Batch} = erlkaf:produce_batch(Client, T, lists:duplicate(1500, integer_to_binary(I))),
        Single ++ Batch
    end,
    Pids = [spawn_link(fun() -> Self ! {refs, self(), Client, Produce(Client, I)} end)
            || {Client, I} <- [{C, 1}, {C, 2}, {Other, 3}, {Other, 4}]],
    ByClient = lists:foldl(fun(Pid, Acc) ->
        receive {refs, Pid, Client, Refs} -> maps:update_with(Client, fun(L) -> Refs ++ L end, Refs, Acc) end
    end, #{}, Pids),
    All = lists:append(maps:values(ByClient)),
    ?assertEqual(8000, length(lists:usort(All))),
    VmStart = erlang:system_time(microsecond) - 1000 * element(1, erlang:statistics(wall_clock)),
    ?assert(lists:all(fun(R) -> is_integer(R) andalso R > VmStart - 1000000 end, All)),
    [begin
         Got = erlkaf_test_lib:collect_reports(Client, maps:get(Client, ByClient)),
         ?assertEqual(4000, map_size(Got))
     end || Client <- [C, Other]],
    ok = erlkaf:stop_client(Other),
    %% The internal form with a MsgRef (the disk spill's) wants a positive integer there.
    {error, {{badarg, message}, [], _}} = erlkaf:produce_batch(C, T, [{make_ref(), -1, undefined, <<"v">>, undefined, 0}]),
    {error, {{badarg, message}, [], _}} = erlkaf:produce_batch(C, T, [{0, -1, undefined, <<"v">>, undefined, 0}]),
    {ok, [77]} = erlkaf:produce_batch(C, T, [{77, -1, undefined, <<"v">>, undefined, 0}]),
    #{77 := {ok, #erlkaf_msg{value = <<"v">>}}} = erlkaf_test_lib:collect_reports(C, [77]).

t_headers_partition_and_timestamp(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    {ok, R5} = erlkaf:produce(C, T, <<"k">>, <<"v">>, [{<<"a">>, <<"1">>}, {b, 2}, {<<"a">>, undefined}]),
    {ok, R6} = erlkaf:produce(C, T, 2, <<"k">>, <<"v">>, #{<<"m">> => <<"x">>}),
    {ok, R7} = erlkaf:produce(C, T, 3, undefined, <<"v">>, [], 1600000000123),
    Got = erlkaf_test_lib:collect_reports(C, [R5, R6, R7]),
    {ok, #erlkaf_msg{headers = [{<<"a">>, <<"1">>}, {<<"b">>, <<"2">>}, {<<"a">>, undefined}]}} = maps:get(R5, Got),
    {ok, #erlkaf_msg{partition = 2, headers = [{<<"m">>, <<"x">>}]}} = maps:get(R6, Got),
    %% The mock answers with LogAppendTime, so the reported timestamp is the broker's;
    %% erlkaf_kcat_SUITE checks that the CreateTime we set reached the log.
    {ok, #erlkaf_msg{partition = 3, key = undefined, timestamp = {_, _}}} = maps:get(R7, Got).

t_null_key_and_tombstone(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    {ok, R1} = erlkaf:produce(C, T, undefined, undefined),
    {ok, R2} = erlkaf:produce(C, T, <<>>, <<>>),
    Got = erlkaf_test_lib:collect_reports(C, [R1, R2]),
    {ok, #erlkaf_msg{key = undefined, value = undefined}} = maps:get(R1, Got),
    {ok, #erlkaf_msg{key = <<>>, value = <<>>}} = maps:get(R2, Got).

t_iolist_values_and_keys(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    {ok, R} = erlkaf:produce(C, T, ["k", <<"ey">>], [<<"va">>, $l, [<<"ue">>]]),
    #{R := {ok, #erlkaf_msg{key = <<"key">>, value = <<"value">>}}} = erlkaf_test_lib:collect_reports(C, [R]).

%% Messages that are too much work for a scheduler (a long iolist to flatten: value, key,
%% header; binaries and charlists; every form; a large key or many headers for librdkafka
%% to copy) are produced on a dirty scheduler: every message is produced and reported
%% with its bytes, and no produce NIF call on a scheduler took 2 ms of CPU (copying these
%% took 10 ms in one call, 100 messages of 10,000 headers 200 ms).
t_heavy_messages_are_produced_on_a_dirty_scheduler(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    Half = binary:copy(<<"x">>, 400 * 1024),
    Msgs = [[Half, integer_to_binary(I), Half] || I <- lists:seq(1, 24)]
        ++ [{lists:duplicate(30000, $k), <<"charlist key">>},
            #{value => [lists:duplicate(20000, $v)], headers => [{<<"h">>, [Half, "!"]}]},
            {-1, undefined, [<<"5-tuple">>, Half], undefined, 0},
            {binary:copy(<<"K">>, 600 * 1024), <<"large binary key">>},
            <<"binary">>],
    ManyHeaders = [{integer_to_binary(I), <<"v">>} || I <- lists:seq(1, 3000)],
    Headers = [#{value => integer_to_binary(I), headers => ManyHeaders} || I <- lists:seq(1, 20)],
    ok = erlkaf_nif:nif_call_times_reset(),
    {ok, Refs} = erlkaf:produce_batch(C, T, Msgs),
    {ok, Ref} = erlkaf:produce(C, T, lists:duplicate(30000, $q), [Half, Half]),
    {ok, HRefs} = erlkaf:produce_batch(C, T, Headers),
    #{longest_produce_cpu_us := Us} = erlkaf_nif:nif_counters(),
    ?assert(Us < 2000, {longest_produce_cpu_us, Us}),
    Got = erlkaf_test_lib:collect_reports(C, [Ref | Refs] ++ HRefs),
    [{ok, #erlkaf_msg{headers = ManyHeaders}} = maps:get(R, Got) || R <- HRefs],
    lists:foreach(fun({R, M}) ->
                          {ok, #erlkaf_msg{key = K, value = V}} = maps:get(R, Got),
                          ?assertEqual(long_value(M), V),
                          ?assertEqual(long_key(M), K)
                  end, lists:zip(Refs, Msgs)),
    {ok, #erlkaf_msg{key = QKey, value = QValue, headers = undefined}} = maps:get(Ref, Got),
    ?assertEqual({30000, 800 * 1024}, {byte_size(QKey), byte_size(QValue)}),
    {ok, #erlkaf_msg{headers = [{<<"h">>, H}]}} = maps:get(lists:nth(26, Refs), Got),
    {ok, #erlkaf_msg{key = BigKey}} = maps:get(lists:nth(28, Refs), Got),
    ?assertEqual(600 * 1024, byte_size(BigKey)),
    ?assertEqual(iolist_to_binary([Half, "!"]), H),
    %% One that is not iodata after all: refused, what came before produced.
    NotIo = [Half | improper],
    {error, {{badarg, value}, [Before], [NotIo, <<"after">>]}} =
        erlkaf:produce_batch(C, T, [<<"before">>, NotIo, <<"after">>]),
    _ = erlkaf_test_lib:collect_reports(C, [Before]),
    %% produce_sync waits for its report across the dirty call too.
    {ok, _, _} = erlkaf:produce_sync(C, T, undefined, [Half, Half]),
    %% Without MsgRefs: counted across the dirty scheduler's call too.
    {ok, 3} = erlkaf:produce_batch(C, T, [<<"a">>, [Half, Half], <<"b">>], #{refs => false}),
    Sizes = [receive {dr, C, undefined, ok, #erlkaf_msg{value = V}} -> byte_size(V)
             after 20000 -> ct:fail(missing_report) end || _ <- [1, 2, 3]],
    ?assertEqual([1, 1, 800 * 1024], lists:sort(Sizes)).

long_value({_, V}) -> iolist_to_binary(V);
long_value(#{value := V}) -> iolist_to_binary(V);
long_value({_, _, V, _, _}) -> iolist_to_binary(V);
long_value(V) -> iolist_to_binary(V).

long_key({K, _}) -> iolist_to_binary(K);
long_key(_) -> undefined.

t_batch_of_10000_each_reported_once_with_contiguous_offsets(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    N = 10000,
    Msgs = [#{key => integer_to_binary(I), value => <<"value-", (integer_to_binary(I))/binary>>,
              partition => I rem 4} || I <- lists:seq(1, N)],
    {ok, Refs} = erlkaf:produce_batch(C, T, Msgs),
    ?assertEqual(N, length(Refs)),
    ?assertEqual(N, length(lists:usort(Refs))),
    Got = erlkaf_test_lib:collect_reports(C, Refs),
    Reports = [maps:get(R, Got) || R <- Refs],
    %% Report i belongs to message i.
    lists:foreach(fun({I, {ok, #erlkaf_msg{key = K, partition = P}}}) ->
                          ?assertEqual(integer_to_binary(I), K),
                          ?assertEqual(I rem 4, P)
                  end, lists:zip(lists:seq(1, N), Reports)),
    [?assertEqual(lists:seq(0, N div 4 - 1),
                  lists:sort([O || {ok, #erlkaf_msg{partition = P1, offset = O}} <- Reports, P1 =:= P]))
     || P <- [0, 1, 2, 3]].

%% Keyless messages of a batch share one sticky partition (erlkaf takes one partition
%% decision per run of them); keyed ones hash as librdkafka's default partitioner does
%% (consistent_random: CRC-32 of the key, as erlang:crc32/1 computes it).
t_keyless_batch_sticks_to_one_partition_keys_hash(Config) ->
    T = ?config(topic, Config),
    C = t_sticky_producer,
    %% (An interval longer than the test: the batch's runs must not see it expire.)
    erlkaf_test_lib:reporting_producer(C, Config, [{sticky_partitioning_linger_ms, 60000}]),
    %% The topic's partitions known first: the batch then takes erlkaf's path, not
    %% librdkafka's queue for messages waiting for their topic.
    {ok, _, _} = erlkaf:produce_sync(C, T, undefined, <<"warm-up">>),
    {ok, Partitions} = erlkaf:get_partitions_count(C, T),
    Msgs = [case I rem 7 of
                0 -> {integer_to_binary(I), <<"keyed">>};
                _ -> <<"keyless">>
            end || I <- lists:seq(1, 3000)],
    {ok, Refs} = erlkaf:produce_batch(C, T, Msgs),
    Got = erlkaf_test_lib:collect_reports(C, Refs),
    Reports = [maps:get(R, Got) || R <- Refs],
    ok = erlkaf:stop_client(C),
    Keyless = lists:usort([P || {ok, #erlkaf_msg{key = undefined, partition = P}} <- Reports]),
    ?assertMatch([_], Keyless),
    [?assertEqual(erlang:crc32(K) rem Partitions, P) || {ok, #erlkaf_msg{key = K, partition = P}} <- Reports, K =/= undefined],
    ?assertEqual(3000, length([ok || {ok, _} <- Reports])).

t_batch_forms(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    Big = binary:copy(<<"x">>, 100000),
    {ok, Refs} = erlkaf:produce_batch(C, T, [<<"plain">>, ["io", <<"list">>], {<<"k">>, Big},
                                             {undefined, undefined}, #{value => <<"m">>, headers => #{h => v}}]),
    Got = erlkaf_test_lib:collect_reports(C, Refs),
    [{ok, #erlkaf_msg{key = undefined, value = <<"plain">>}},
     {ok, #erlkaf_msg{value = <<"iolist">>}},
     {ok, #erlkaf_msg{key = <<"k">>, value = Big}},
     {ok, #erlkaf_msg{key = undefined, value = undefined}},
     {ok, #erlkaf_msg{value = <<"m">>, headers = [{<<"h">>, <<"v">>}]}}] = [maps:get(R, Got) || R <- Refs].

%% Report values of every size class (heap binaries, values copied into shared binaries,
%% refc binaries), as binaries and iolists, through produce/4 and produce_batch: each
%% report carries its own message's value, also where runs of values cross the shared
%% binaries' boundaries.
t_report_values_of_every_size_class(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    Sizes = [0, 1, 64, 65, 100, 700, 1024, 1025, 4000, 5000, 100000],
    Values = [report_value(I, lists:nth(1 + I rem length(Sizes), Sizes)) || I <- lists:seq(1, 660)],
    {Single, Batch} = lists:split(330, Values),
    Refs1 = [begin {ok, R} = erlkaf:produce(C, T, undefined, V), R end || V <- Single],
    {ok, Refs2} = erlkaf:produce_batch(C, T, Batch),
    Got = erlkaf_test_lib:collect_reports(C, Refs1 ++ Refs2),
    lists:foreach(fun({R, V}) ->
                          {ok, #erlkaf_msg{value = Reported}} = maps:get(R, Got),
                          ?assertEqual(iolist_to_binary(V), Reported)
                  end, lists:zip(Refs1 ++ Refs2, Values)).

%% Value I of Size bytes (distinct per I); every third one an iolist.
report_value(I, Size) ->
    B = binary:part(binary:copy(<<I:32>>, Size div 4 + 1), 0, Size),
    case I rem 3 of
        0 -> [binary:part(B, 0, Size div 2), binary:part(B, Size div 2, Size - Size div 2)];
        _ -> B
    end.

t_batch_with_bad_element_says_what_was_accepted(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    Good = [<<"a">>, <<"b">>],
    Bad = [{<<"k">>, 42}, <<"c">>],
    {error, {{badarg, value}, Refs, Rest}} = erlkaf:produce_batch(C, T, Good ++ Bad),
    ?assertEqual(2, length(Refs)),
    ?assertEqual(Bad, Rest),
    _ = erlkaf_test_lib:collect_reports(C, Refs),
    %% Across NIF calls too: the bad element after 5000 good ones.
    Many = lists:duplicate(5000, <<"x">>),
    {error, {{badarg, partition}, Refs2, [#{partition := -7}]}} =
        erlkaf:produce_batch(C, T, Many ++ [#{value => <<"y">>, partition => -7}]),
    ?assertEqual(5000, length(Refs2)),
    _ = erlkaf_test_lib:collect_reports(C, Refs2),
    %% A value that looks like an iolist but is not (found when it is flattened), in the
    %% middle of a later chunk of a call (the NIF takes 512 messages a chunk).
    BadIo = {<<"k">>, [<<"a">>, foo]},
    {error, {{badarg, value}, Refs3, [BadIo, <<"z">>]}} =
        erlkaf:produce_batch(C, T, lists:duplicate(700, <<"w">>) ++ [BadIo, <<"z">>]),
    ?assertEqual(700, length(Refs3)),
    _ = erlkaf_test_lib:collect_reports(C, Refs3),
    receive {dr, C, _, _, _} = Extra -> ct:fail({unexpected_report, Extra}) after 200 -> ok end.

%% refs => false: counts instead of MsgRefs (also across NIF calls and on a refusal);
%% every accepted message is reported once, under `undefined', with its content.
t_batch_without_refs_answers_counts(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    N = 6000,
    Msgs = [#{key => integer_to_binary(I), value => integer_to_binary(I), partition => I rem 4} || I <- lists:seq(1, N)],
    {ok, N} = erlkaf:produce_batch(C, T, Msgs, #{refs => false}),
    {ok, 2} = erlkaf:produce_batch(C, T, [<<"a">>, {<<"k">>, <<"b">>}], [{refs, false}]),
    {error, {{badarg, value}, 5000, [{<<"k">>, 42}]}} =
        erlkaf:produce_batch(C, T, lists:duplicate(5000, <<"x">>) ++ [{<<"k">>, 42}], #{refs => false}),
    {ok, 0} = erlkaf:produce_batch(C, T, [], #{refs => false}),
    Keys = fun Collect(0, Acc) -> Acc;
               Collect(Left, Acc) ->
                   receive {dr, C, undefined, ok, #erlkaf_msg{key = K}} -> Collect(Left - 1, [K | Acc])
                   after 20000 -> ct:fail({missing_reports, Left})
                   end
           end(N + 2 + 5000, []),
    ?assertEqual(lists:seq(1, N), lists:sort([binary_to_integer(K) || K <- Keys, K =/= undefined, K =/= <<"k">>])),
    receive {dr, C, _, _, _} = Extra -> ct:fail({unexpected_report, Extra}) after 200 -> ok end,
    %% Options are checked.
    {error, {badarg, options}} = erlkaf:produce_batch(C, T, [<<"a">>], #{refs => maybe}),
    {error, {badarg, options}} = erlkaf:produce_batch(C, T, [<<"a">>], #{colour => red}),
    {error, {badarg, options}} = erlkaf:produce_batch(C, T, [<<"a">>], [nonsense]),
    {error, {badarg, options}} = erlkaf:produce_batch(C, T, [<<"a">>], 42).

%% An improper list is refused before any of it is produced.
t_batch_improper_list_is_badarg(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    ?assertError(badarg, erlkaf:produce_batch(C, T, [<<"a">>, <<"b">> | tail])),
    ?assertError(badarg, erlkaf:produce_batch(C, T, lists:duplicate(1000, <<"a">>) ++ improper_tail)),
    receive {dr, C, _, _, _} = Extra -> ct:fail({unexpected_report, Extra}) after 300 -> ok end.

t_bad_input_is_an_error_term(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    {error, {badarg, key}} = erlkaf:produce(C, T, 1, <<"v">>),
    {error, {badarg, value}} = erlkaf:produce(C, T, <<"k">>, an_atom),
    {error, {badarg, headers}} = erlkaf:produce(C, T, <<"k">>, <<"v">>, [{1.5, x}]),
    {error, {badarg, headers}} = erlkaf:produce(C, T, <<"k">>, <<"v">>, not_headers),
    {error, {badarg, partition}} = erlkaf:produce(C, T, -2, <<"k">>, <<"v">>, []),
    {error, {badarg, timestamp}} = erlkaf:produce(C, T, 0, <<"k">>, <<"v">>, [], -5),
    {error, {badarg, topic}} = erlkaf:produce(C, 123, <<"k">>, <<"v">>),
    {error, {badarg, topic}} = erlkaf:produce(C, <<>>, <<"k">>, <<"v">>),
    {error, {badarg, message}} = erlkaf:produce_batch(C, T, not_a_list),
    {error, {{badarg, message}, [], [{a, b, c}]}} = erlkaf:produce_batch(C, T, [{a, b, c}]),
    {error, undefined_client} = erlkaf:produce(no_such_client, T, <<"k">>, <<"v">>),
    {ok, []} = erlkaf:produce_batch(C, T, []).

t_unknown_partition_is_refused_at_produce(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    %% Learn the topic (4 partitions, auto-created) first.
    {ok, _, _} = erlkaf:produce_sync(C, T, undefined, <<"warm">>),
    {error, unknown_partition} = erlkaf:produce(C, T, 99, undefined, <<"v">>, []).

t_produce_sync_returns_partition_and_offset(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    {ok, 1, 0} = erlkaf:produce_sync(C, T, <<"k">>, <<"v">>, #{partition => 1}),
    {ok, 1, 1} = erlkaf:produce_sync(C, T, <<"k">>, <<"v">>, [{partition, 1}, {timeout, 5000}]),
    %% Sync reports go to the caller, not to the delivery-report callback.
    receive {dr, C, _, _, _} = Extra -> ct:fail({unexpected_report, Extra}) after 200 -> ok end.

t_flush_waits_for_every_report(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    {ok, Refs} = erlkaf:produce_batch(C, T, lists:duplicate(2000, <<"f">>)),
    ok = erlkaf:flush(C, 10000),
    %% After flush every report has reached the callback already.
    Got = [receive {dr, C, R, ok, _} -> R after 0 -> missing end || R <- Refs],
    ?assertEqual(Refs, Got).

t_create_topic_settings_and_errors(Config) ->
    C = ?config(client, Config), T = ?config(topic, Config),
    ok = erlkaf:create_topic(C, T, [{request_required_acks, 1}, {<<"compression.codec">>, lz4}]),
    {error, already_exists} = erlkaf:create_topic(C, T, []),
    {error, {invalid_config, request_required_acks, _}} = erlkaf:create_topic(C, <<T/binary, "x">>, [{request_required_acks, banana}]),
    {error, {options, {bootstrap_servers, "x"}}} = erlkaf:create_topic(C, <<T/binary, "y">>, [{bootstrap_servers, "x"}]),
    {ok, _, _} = erlkaf:produce_sync(C, T, <<"k">>, <<"v">>).

t_create_producer_errors(_Config) ->
    {error, {invalid_config, linger_ms, Msg}} = erlkaf:create_producer(bad1, [{linger_ms, banana}]),
    ?assert(is_binary(Msg)),
    {error, {invalid_config, <<"no.such.prop">>, _}} = erlkaf:create_producer(bad2, [{<<"no.such.prop">>, 1}]),
    {error, {options, {nope, 1}}} = erlkaf:create_producer(bad3, [{nope, 1}]),
    {error, {options, {delivery_report_callback, 42}}} = erlkaf:create_producer(bad4, [{delivery_report_callback, 42}]),
    {error, {invalid_client_id, "str"}} = erlkaf:create_producer("str", []),
    ok = erlkaf:create_producer(dup1, []),
    {error, already_exists} = erlkaf:create_producer(dup1, []),
    ok = erlkaf:stop_client(dup1),
    {error, undefined_client} = erlkaf:stop_client(dup1).

%% The producer process builds reports itself (the native client hands each round over
%% and waits): a process that does not take them (suspended here, as a slow callback
%% would be) gets them from the client after a short wait, and a report too large to
%% build on a scheduler (an iolist value of 1.2 MB, copied for the report) is built by
%% the client. Either way each message is reported once, in order within its partition.
t_reports_not_taken_by_the_process_still_come_in_order(Config) ->
    T = ?config(topic, Config), C = handover,
    erlkaf_test_lib:reporting_producer(C, Config, [{message_max_bytes, 2000000}]),
    {ok, producer, _, Pid, _} = erlkaf_registry:lookup(C),
    Half = binary:copy(<<"h">>, 600 * 1024),
    Value = fun(I) when I rem 500 =:= 7 -> [Half, integer_to_binary(I), Half];
               (I) -> integer_to_binary(I) end,
    Produce = fun(From, To) ->
        {ok, Refs} = erlkaf:produce_batch(C, T, [#{partition => 0, value => Value(I)} || I <- lists:seq(From, To)]),
        Refs
    end,
    Collect = fun(Refs) ->
        Got = [receive {dr, C, R, ok, #erlkaf_msg{partition = 0, offset = O, value = V}} -> {R, O, V}
               after 20000 -> ct:fail(missing_reports) end || _ <- Refs],
        {Arrived, Offsets, Values} = lists:unzip3(Got),
        ?assertEqual(Refs, Arrived),
        ?assertEqual(lists:seq(hd(Offsets), hd(Offsets) + length(Refs) - 1), Offsets),
        Values
    end,
    Reclaimed = fun() -> maps:get(reports_reclaimed, erlkaf_nif:nif_counters()) end,
    R0 = Reclaimed(),
    ok = sys:suspend(Pid),
    Refs1 = Produce(1, 2000),
    %% Longer than the client waits for a round to be taken.
    timer:sleep(500),
    ok = sys:resume(Pid),
    Values1 = Collect(Refs1),
    R1 = Reclaimed(),
    ?assertEqual([iolist_to_binary(Value(I)) || I <- lists:seq(1, 2000)], Values1),
    %% The client built the reports the suspended process left (most of them: some may
    %% have come after it was resumed).
    ?assert(R1 - R0 >= 1000, {reclaimed_while_suspended, R1 - R0}),
    %% Then the process takes all of them, the four large ones each on a dirty scheduler.
    %% (Up to three tries: the OS keeping the process off its CPU for 50 ms would leave
    %% a round to the client, which the order checks accept but these counts do not.)
    Heavy = {erlkaf_nif, producer_take_heavy_report, 2},
    Later = fun(From) ->
        Before = Reclaimed(),
        1 = erlang:trace_pattern(Heavy, true, [call_count]),
        Values = Collect(Produce(From, From + 1999)),
        {call_count, HeavyCalls} = erlang:trace_info(Heavy, call_count),
        erlang:trace_pattern(Heavy, false, [call_count]),
        ?assertEqual([iolist_to_binary(Value(I)) || I <- lists:seq(From, From + 1999)], Values),
        {Reclaimed() - Before, HeavyCalls}
    end,
    Tries = lists:foldl(fun(From, [{0, 4} | _] = Acc) -> _ = From, Acc;
                           (From, Acc) -> [Later(From) | Acc]
                        end, [], [2001, 4001, 6001]),
    ?assertMatch([{0, 4} | _], Tries),
    receive {dr, C, _, _, _} = Extra -> ct:fail({duplicate, Extra}) after 100 -> ok end,
    ok = erlkaf:stop_client(C).

%% A callback slower than the client waits for a round (1 ms every 20 reports: a round
%% of hundreds takes longer than 50 ms): the client takes back the rest of a round the
%% process is in the middle of, and the process's next take finds nothing. Each message
%% is still reported once, in offset order within its partition.
t_reports_taken_back_mid_round_keep_order(Config) ->
    T = ?config(topic, Config), C = slow_handover, Self = self(),
    Count = atomics:new(1, []),
    Cb = fun(Ref, Status, Msg) ->
        Self ! {dr, C, Ref, Status, Msg},
        case atomics:add_get(Count, 1, 1) rem 20 of 0 -> timer:sleep(1); _ -> ok end
    end,
    ok = erlkaf:create_producer(C, [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)}, {linger_ms, 20},
                                    {delivery_report_callback, Cb}]),
    R0 = maps:get(reports_reclaimed, erlkaf_nif:nif_counters()),
    N = 6000,
    {ok, Refs} = erlkaf:produce_batch(C, T, [#{partition => I rem 3, value => integer_to_binary(I)} || I <- lists:seq(1, N)]),
    Got = [receive {dr, C, R, ok, #erlkaf_msg{partition = P, offset = O, value = V}} -> {R, P, O, V}
           after 30000 -> ct:fail(missing_reports) end || _ <- Refs],
    receive {dr, C, _, _, _} = Extra -> ct:fail({duplicate, Extra}) after 100 -> ok end,
    ?assertEqual(lists:sort(Refs), lists:sort([R || {R, _, _, _} <- Got])),
    [begin
         InOrder = [{O, V} || {_, P1, O, V} <- Got, P1 =:= P],
         ?assertEqual(lists:sort(InOrder), InOrder),
         ?assertEqual([integer_to_binary(I) || I <- lists:seq(1, N), I rem 3 =:= P], [V || {_, V} <- InOrder])
     end || P <- [0, 1, 2]],
    Reclaimed = maps:get(reports_reclaimed, erlkaf_nif:nif_counters()) - R0,
    ct:pal("reports the client took back: ~p of ~p", [Reclaimed, N]),
    %% (Most of them here; all of them only if the OS kept the process off its CPU for
    %% the first 50 ms of every round, which the other checks do not mind.)
    ?assert(Reclaimed > 0, {reclaimed, Reclaimed}),
    ok = erlkaf:stop_client(C).

t_delivery_report_only_error_filters_successes(Config) ->
    T = ?config(topic, Config),
    erlkaf_test_lib:reporting_producer(only_err, Config, [{delivery_report_only_error, true}]),
    {ok, _} = erlkaf:produce(only_err, T, <<"k">>, <<"v">>),
    ok = erlkaf:flush(only_err, 5000),
    receive {dr, only_err, _, _, _} = R -> ct:fail({unexpected, R}) after 100 -> ok end,
    %% Errors still come: an unknown partition fails at delivery for a topic not yet known.
    ok = erlkaf:stop_client(only_err).

t_delivery_report_priority(Config) ->
    T = ?config(topic, Config),
    Check = fun(C, Opts, Expected) ->
        erlkaf_test_lib:reporting_producer(C, Config, Opts),
        {ok, producer, _, Pid, _} = erlkaf_registry:lookup(C),
        ?assertEqual({priority, Expected}, process_info(Pid, priority)),
        {ok, Ref} = erlkaf:produce(C, T, <<"k">>, <<"v">>),
        receive {dr, C, Ref, ok, _} -> ok after 10000 -> ct:fail({no_report, C}) end,
        ok = erlkaf:stop_client(C)
    end,
    Check(prio_default, [], high),
    Check(prio_normal, [{delivery_report_priority, normal}], normal),
    ?assertEqual({error, {options, {delivery_report_priority, urgent}}},
                 erlkaf:create_producer(prio_bad, [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)},
                                                   {delivery_report_priority, urgent}])).

t_delivery_report_2_forms(Config) ->
    T = ?config(topic, Config), Self = self(),
    ok = erlkaf:create_producer(dr2, [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)},
                                      {delivery_report_callback, fun(S, M) -> Self ! {dr2, S, M} end}]),
    {ok, _} = erlkaf:produce(dr2, T, <<"k">>, <<"v2">>),
    receive {dr2, ok, #erlkaf_msg{value = <<"v2">>}} -> ok after 10000 -> ct:fail(no_report) end,
    ok = erlkaf:stop_client(dr2),
    %% A module with delivery_report/2 only: no MsgRef is kept for its reports, every
    %% value still comes back (binaries small and large, an iolist, null).
    persistent_term:put({?MODULE, dr2}, Self),
    ok = erlkaf:create_producer(dr2m, [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)},
                                       {delivery_report_callback, ?MODULE}]),
    Big = binary:copy(<<"b">>, 300),
    Values = [<<"small">>, Big, [<<"io">>, "list"], undefined, binary:copy(<<"c">>, 1025), [Big, Big]],
    {ok, _} = erlkaf:produce(dr2m, T, <<"k">>, Big),
    {ok, _} = erlkaf:produce_batch(dr2m, T, [{<<"k">>, V} || V <- Values]),
    Got = [receive {dr2m, ok, #erlkaf_msg{value = V}} -> V after 10000 -> ct:fail(no_report) end || _ <- [x | Values]],
    ?assertEqual(lists:sort([Big, <<"small">>, Big, <<"iolist">>, undefined, binary:copy(<<"c">>, 1025),
                             <<Big/binary, Big/binary>>]), lists:sort(Got)),
    ok = erlkaf:stop_client(dr2m).

%% The callback module of t_delivery_report_2_forms (arity 2 only).
delivery_report(Status, Msg) ->
    persistent_term:get({?MODULE, dr2}) ! {dr2m, Status, Msg}.

t_seed_producer_example_runs(Config) ->
    {ok, Text} = file:read_file(filename:join(?config(data_dir, Config), "seed_producer_example.erl.txt")),
    Src = binary:replace(Text, <<"broker1:9092,broker2:9092">>, erlkaf_test_lib:bootstrap(Config)),
    File = filename:join(?config(priv_dir, Config), "test.erl"),
    ok = file:write_file(File, Src),
    {ok, test, Bin} = compile:file(File, [binary, return_errors]),
    {module, test} = code:load_binary(test, "test.erl", Bin),
    ok = test:create_producer(),
    {ok, Pid} = client_pid(client1),
    erlang:trace_pattern({test, delivery_report, 3}, true, [local]),
    1 = erlang:trace(Pid, true, [call]),
    {ok, _} = test:produce(<<"key1">>, <<"val1">>),
    receive
        {trace, Pid, call, {test, delivery_report, [Ref, ok, #erlkaf_msg{topic = <<"benchmark">>, key = <<"key1">>, value = <<"val1">>}]}} ->
            ?assert(is_integer(Ref) andalso Ref > 0)
    after 10000 ->
        ct:fail(no_delivery_report)
    end,
    erlang:trace(Pid, false, [call]).

client_pid(Id) ->
    {ok, producer, _Res, Pid, _} = erlkaf_registry:lookup(Id),
    {ok, Pid}.
