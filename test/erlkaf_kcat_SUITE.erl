%%% What erlkaf writes, read back by an independent client: kcat (librdkafka's CLI, a
%%% separate OS process) against `bin/erlkaf-broker' (the embedded broker in its own VM).
%%% Keys, values, null keys, tombstones, headers and timestamps must come back as sent.
-module(erlkaf_kcat_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

suite() -> [{timetrap, {seconds, 120}}].
all() -> erlkaf_test_lib:all_t(?MODULE).

init_per_suite(Config) ->
    Kcat = os:find_executable("kcat"),
    Kcat =/= false orelse ct:fail("kcat is not installed (apt-get install kcat; make deps does it)"),
    ok = erlkaf:start(),
    %% From a source tree this runs bin/erlkaf-broker itself.
    {ok, Holder, Bootstrap} = erlkaf_broker_cli:spawn_os_process(["--topic", "kcat", "--partitions", "2"]),
    [{kcat, Kcat}, {holder, Holder}, {bootstrap, Bootstrap} | Config].

end_per_suite(Config) ->
    ?config(holder, Config) ! stop,
    ok.

t_kcat_reads_what_erlkaf_wrote(Config) ->
    ok = erlkaf:create_producer(kcat_p, [{bootstrap_servers, ?config(bootstrap, Config)}]),
    T = <<"kcat">>,
    {ok, 0, 0} = erlkaf:produce_sync(kcat_p, T, <<"key1">>, <<"value1">>,
                                     #{partition => 0, headers => [{<<"h1">>, <<"x">>}, {<<"h2">>, <<"y">>}],
                                       timestamp => 1600000000123}),
    {ok, 0, 1} = erlkaf:produce_sync(kcat_p, T, undefined, <<"no-key">>, #{partition => 0}),
    {ok, 0, 2} = erlkaf:produce_sync(kcat_p, T, <<"tomb">>, undefined, #{partition => 0}),
    {ok, Refs} = erlkaf:produce_batch(kcat_p, T, [#{key => integer_to_binary(I), value => <<"b", (integer_to_binary(I))/binary>>,
                                                   partition => 1, timestamp => 1700000000000 + I}
                                                 || I <- lists:seq(1, 100)]),
    ok = case erlkaf:flush(kcat_p, 10000) of ok -> ok; E -> ct:fail({flush, E, erlkaf:producer_info(kcat_p)}) end,
    ?assertEqual(100, length(Refs)),
    Lines = kcat(Config, T),
    P0 = [L || L <- Lines, hd(L) =:= "0"],
    ?assertEqual([["0", "0", "key1", "value1", "h1=x,h2=y", "1600000000123", "4", "6"],
                  ["0", "1", "", "no-key", "", '_', "-1", "6"],
                  ["0", "2", "tomb", "", "", '_', "4", "-1"]],
                 [[if I =:= 6, N >= 2 -> recent(F); true -> F end || {I, F} <- lists:enumerate(L)]
                  || {N, L} <- lists:enumerate(P0)]),
    P1 = [L || L <- Lines, hd(L) =:= "1"],
    ?assertEqual([["1", integer_to_list(I - 1), integer_to_list(I), "b" ++ integer_to_list(I), "",
                   integer_to_list(1700000000000 + I), integer_to_list(length(integer_to_list(I))),
                   integer_to_list(1 + length(integer_to_list(I)))] || I <- lists:seq(1, 100)], P1),
    ok = erlkaf:stop_client(kcat_p).

%% A timestamp librdkafka set at produce time (CreateTime, now).
recent(Ts) ->
    Age = erlang:system_time(millisecond) - list_to_integer(Ts),
    ?assert(Age >= 0 andalso Age < 60000),
    '_'.

kcat(Config, Topic) ->
    Cmd = io_lib:format("~ts -C -b '~ts' -t '~ts' -e -q -f '%p|%o|%k|%s|%h|%T|%K|%S\\n'",
                        [?config(kcat, Config), ?config(bootstrap, Config), Topic]),
    Out = os:cmd(lists:flatten(Cmd)),
    Lines = [string:split(L, "|", all) || L <- string:split(Out, "\n", all), L =/= ""],
    lists:sort(fun([P1, O1 | _], [P2, O2 | _]) -> {P1, list_to_integer(O1)} =< {P2, list_to_integer(O2)} end, Lines).
