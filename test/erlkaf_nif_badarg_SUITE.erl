%%% Random terms to every NIF: each call returns a term or raises `badarg', never takes
%%% the VM down, and the client keeps working afterwards.
-module(erlkaf_nif_badarg_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

suite() -> [{timetrap, {seconds, 120}}].
all() -> erlkaf_test_lib:all_t(?MODULE).

init_per_suite(Config) ->
    erlkaf_test_lib:start_mock(Config).

end_per_suite(Config) ->
    erlkaf_test_lib:stop_mock(Config).

init_per_testcase(_Case, Config) ->
    %% Reports go to the process that created the producer: the test case's.
    erlkaf_test_lib:reporting_producer(fuzz, Config, [{stop_flush_timeout_ms, 100}]),
    Config.

end_per_testcase(_Case, _Config) ->
    erlkaf:stop_client(fuzz).

%% NIFs that create native objects get fewer rounds: each one starts threads.
rounds(producer_new) -> 30;
rounds(mock_new) -> 0;
rounds(_) -> 3000.

t_random_terms_never_crash(Config) ->
    %% A producer of its own: the fuzz may well stop it.
    {ok, Res} = erlkaf_nif:producer_new(<<"fz">>, [{<<"bootstrap.servers">>, erlkaf_test_lib:bootstrap(Config)}], self(), all),
    {ok, M} = erlkaf_mock:start(),
    MockRes = maps:get(res, sys:get_state(M)),
    rand:seed(exsss, {1, 2, 3}),
    Nifs = [{F, A} || {F, A} <- erlkaf_nif:module_info(exports),
                      F =/= module_info, F =/= so_path, F =/= load, A > 0],
    Counts = [{F, fuzz(F, A, rounds(F), [Res, MockRes])} || {F, A} <- Nifs],
    ct:pal("~p", [Counts]),
    %% The client still works.
    {ok, _, _} = erlkaf:produce_sync(fuzz, erlkaf_test_lib:unique_topic(fuzz), <<"k">>, <<"v">>),
    erlkaf_mock:stop(M).

%% The produce NIFs find the producer by its resource type (a handle taken at load, not
%% rustler's lookup): another resource type or a term that is no resource is refused as
%% before, and a producer's is accepted.
t_produce_nifs_take_only_a_producer(Config) ->
    {ok, M} = erlkaf_mock:start(),
    MockRes = maps:get(res, sys:get_state(M)),
    {ok, Res} = erlkaf_nif:producer_new(<<"rt">>, [{<<"bootstrap.servers">>, erlkaf_test_lib:bootstrap(Config)}], self(), all),
    T = erlkaf_test_lib:unique_topic(rt),
    Send = fun(R) -> erlkaf_nif:producer_send(R, T, -1, undefined, <<"v">>, undefined, 0) end,
    Batch = fun(R) -> erlkaf_nif:producer_produce(R, T, [<<"v">>], owner, true) end,
    [?assertError(badarg, F(Bad)) || F <- [Send, Batch], Bad <- [MockRes, make_ref(), <<"res">>, self()]],
    ?assertMatch({ok, Ref} when is_integer(Ref), Send(Res)),
    ?assertMatch({ok, [Ref]} when is_integer(Ref), Batch(Res)),
    %% The handle was taken at load and agrees with rustler's (checked at producer_new):
    %% a rustler with another layout would turn this off (and cost 3-4% of produce/4).
    ?assertMatch(#{fast_producer_decode := true}, erlkaf_nif:nif_counters()),
    ok = erlkaf_mock:stop(M),
    ok = erlkaf_nif:producer_stop(Res, 1000).

%% Random message lists through the public API: a result term every time, and every
%% accepted message reported.
t_random_batches_through_the_api(Config) ->
    rand:seed(exsss, {4, 5, 6}),
    T = erlkaf_test_lib:unique_topic(fuzzb),
    Refs = lists:foldl(fun(_, Acc) ->
        Msgs = [term(3, [no_resource]) || _ <- lists:seq(1, rand:uniform(20))],
        case erlkaf:produce_batch(fuzz, T, Msgs) of
            {ok, R} -> R ++ Acc;
            {error, {_Reason, R, Rest}} when is_list(R), is_list(Rest) -> R ++ Acc;
            {error, {badarg, _}} -> Acc
        end
    end, [], lists:seq(1, 2000)),
    ct:pal("~p messages accepted", [length(Refs)]),
    ?assert(length(Refs) > 100),
    _ = erlkaf_test_lib:collect_reports(fuzz, Refs),
    _ = Config.

fuzz(F, Arity, Rounds, Resources) ->
    lists:foldl(fun(_, {Ok, Badarg}) ->
        Args = [term(4, Resources) || _ <- lists:seq(1, Arity)],
        try apply(erlkaf_nif, F, Args) of
            _ -> {Ok + 1, Badarg}
        catch
            error:badarg -> {Ok, Badarg + 1}
        end
    end, {0, 0}, lists:seq(1, Rounds)).

term(0, Resources) -> leaf(Resources);
term(Depth, Resources) ->
    case rand:uniform(10) of
        1 -> [term(Depth - 1, Resources) || _ <- lists:seq(1, rand:uniform(4) - 1)];
        2 -> list_to_tuple([term(Depth - 1, Resources) || _ <- lists:seq(1, rand:uniform(6) - 1)]);
        3 -> maps:from_list([{leaf(Resources), term(Depth - 1, Resources)} || _ <- lists:seq(1, rand:uniform(3))]);
        4 -> [term(Depth - 1, Resources) | leaf(Resources)];
        _ -> leaf(Resources)
    end.

leaf(Resources) ->
    case rand:uniform(16) of
        1 -> rand:uniform(1 bsl 70) - (1 bsl 69);
        2 -> rand:uniform(200) - 100;
        3 -> -1;
        4 -> crypto_bytes(rand:uniform(100) - 1);
        5 -> binary:copy(<<"x">>, rand:uniform(200));
        6 -> lists:nth(rand:uniform(8), [undefined, true, false, ok, client, topic, all, errors]);
        7 -> rand:uniform() * 1.0e10;
        8 -> make_ref();
        9 -> self();
        10 -> lists:nth(rand:uniform(length(Resources)), Resources);
        11 -> "a.string";
        12 -> [{<<"linger.ms">>, <<"5">>}];
        13 -> <<1:3>>;
        14 -> fun() -> ok end;
        15 -> [];
        16 -> [<<"v">>, {<<"k">>, <<"v">>}]
    end.

crypto_bytes(N) -> list_to_binary([rand:uniform(256) - 1 || _ <- lists:seq(1, N)]).
