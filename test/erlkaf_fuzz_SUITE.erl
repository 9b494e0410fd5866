%%% Random terms into every public producer function and straight into the NIFs (PropEr):
%%% each call returns a result or `{error, Reason}', or raises `badarg'; the VM never
%%% crashes and the client keeps working.
-module(erlkaf_fuzz_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
%% Debian's erlang-proper ships no include/proper.hrl: the macros, spelled out.
-import(proper_types, [any/0, atom/0, binary/0, integer/0, list/1, oneof/1, range/2]).
-define(FORALL(X, Gen, Prop), proper:forall(Gen, fun(X) -> Prop end)).
-define(LET(X, Gen, In), proper_types:bind(Gen, fun(X) -> In end, false)).
-define(LAZY(X), proper_types:lazy(fun() -> X end)).

-compile([export_all, nowarn_export_all]).

suite() -> [{timetrap, {minutes, 5}}].
all() -> erlkaf_test_lib:all_t(?MODULE).

-define(NUMTESTS, 1500).

init_per_suite(Config0) ->
    Config = erlkaf_test_lib:start_mock(Config0),
    ok = erlkaf_mock:create_topic(?config(mock, Config), <<"fuzz">>, 2, 1),
    ok = erlkaf:create_producer(fuzz, [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)},
                                       {linger_ms, 1}, {message_timeout_ms, 5000}]),
    Config.

end_per_suite(Config) ->
    erlkaf:stop_client(fuzz),
    erlkaf_test_lib:stop_mock(Config).

end_per_testcase(_Case, _Config) ->
    %% Whatever the property threw at it, the client still produces.
    {ok, _, _} = erlkaf:produce_sync(fuzz, <<"fuzz">>, <<"k">>, <<"still alive">>),
    ok.

%% ---------------------------------------------------------------------------------------
%% Generators: mostly almost-right terms (they reach deeper code than random ones).

topic() -> oneof([<<"fuzz">>, <<>>, binary(), atom(), any(), <<0, "bad">>, binary:copy(<<"t">>, 300)]).
key() -> oneof([undefined, binary(), iolist(), any()]).
value() -> oneof([undefined, binary(), iolist(), deep_iolist(), any(), <<1:7>>]).
iolist() -> list(oneof([binary(), range(0, 255), range(-5, 300)])).
deep_iolist() -> ?LAZY(oneof([binary(), [deep_iolist(), binary()], [range(0, 255) | binary()], [1 | 2]])).
headers() -> oneof([undefined, [], list({oneof([binary(), atom(), integer(), any()]), oneof([binary(), undefined, integer(), any()])}),
                    ?LET(L, list({binary(), binary()}), maps:from_list(L)), any()]).
partition() -> oneof([-1, 0, 1, 7, range(-3, 3), integer(), any()]).
timestamp() -> oneof([0, range(0, 1 bsl 42), integer(), any()]).
message() -> oneof([value(), {key(), value()}, {partition(), key(), value(), headers(), timestamp()},
                    ?LET(L, list(oneof([{key, key()}, {value, value()}, {headers, headers()}, {partition, partition()},
                                        {timestamp, timestamp()}, {any(), any()}])), maps:from_list(L)),
                    any()]).
messages() -> oneof([list(message()), [message() | message()], any()]).
client() -> oneof([fuzz, fuzz, no_such_client, any()]).

%% A call's outcome is one of the allowed shapes (anything else is logged).
allowed(F) ->
    case outcome(F) of
        true -> true;
        Bad -> ct:log("not allowed: ~p", [Bad]), Bad
    end.

outcome(F) ->
    try F() of
        ok -> true;
        {ok, _} -> true;
        {ok, _, _} -> true;
        {error, R} -> readable(R);
        Other -> {unexpected_result, Other}
    catch
        error:badarg -> true;
        error:{badarg, _} -> true;
        C:E:St -> {raised, C, E, hd(St)}
    end.

%% An atom, or a tuple led by one (or by such a tuple: produce_batch's partial result).
readable(R) when is_atom(R) -> true;
readable(R) when is_tuple(R), tuple_size(R) > 0 ->
    case readable(element(1, R)) of
        true -> true;
        _ -> {unreadable_reason, R}
    end;
readable(R) -> {unreadable_reason, R}.

check(Prop) ->
    true = proper:quickcheck(Prop, [{numtests, ?NUMTESTS}, noshrink, {on_output, fun(F, A) -> ct:log(F, A) end}]).

%% ---------------------------------------------------------------------------------------

t_produce(_Config) ->
    check(?FORALL({C, T, P, K, V, H, Ts}, {client(), topic(), partition(), key(), value(), headers(), timestamp()},
        true =:= allowed(fun() -> erlkaf:produce(C, T, P, K, V, H, Ts) end)
        andalso true =:= allowed(fun() -> erlkaf:produce(C, T, K, V) end)
        andalso true =:= allowed(fun() -> erlkaf:produce(C, T, K, V, H) end))).

t_produce_batch(_Config) ->
    check(?FORALL({C, T, Ms}, {client(), topic(), messages()},
        true =:= allowed(fun() -> erlkaf:produce_batch(C, T, Ms) end))).

t_produce_sync(_Config) ->
    check(?FORALL({C, T, K, V, O}, {client(), topic(), key(), value(),
                                    oneof([#{}, [{timeout, 2000}], #{partition => partition(), headers => headers()},
                                           #{timeout => any()}, any()])},
        true =:= allowed(fun() ->
            case erlkaf:produce_sync(C, T, K, V, maybe_timeout(O)) of
                {error, msg_timed_out} -> ok;
                Other -> Other
            end
        end))).

maybe_timeout(#{timeout := _} = O) -> O;
maybe_timeout(O) when is_map(O) -> O#{timeout => 2000};
maybe_timeout(O) -> O.

t_create_producer_and_topic(_Config) ->
    Props = [bootstrap_servers, linger_ms, acks, compression_codec, delivery_report_callback,
             queue_buffering_overflow_strategy, enable_idempotence, <<"socket.timeout.ms">>, "batch.size"],
    Cfg = list(oneof([{oneof(Props), oneof([integer(), binary(), atom(), any()])}, any()])),
    check(?FORALL({Id, Config}, {oneof([fuzz_p, <<"fuzz_p">>, any()]), Cfg},
        begin
            R = allowed(fun() -> erlkaf:create_producer(Id, Config) end),
            _ = catch erlkaf:stop_client(Id),
            true =:= R
        end)),
    check(?FORALL({T, Config}, {topic(), Cfg},
        true =:= allowed(fun() -> erlkaf:create_topic(fuzz, T, Config) end))).

t_client_functions_with_random_ids(_Config) ->
    check(?FORALL({Id, A, B}, {client(), any(), any()},
        lists:all(fun(F) -> true =:= allowed(F) end,
                  [fun() -> erlkaf:producer_info(Id) end,
                   fun() -> erlkaf:flush(Id, 100) end,
                   fun() -> erlkaf:assignment(Id) end,
                   fun() -> erlkaf:seek(Id, A, B, 0) end,
                   fun() -> erlkaf:pause(Id, A, B) end,
                   fun() -> erlkaf:resume(Id, A, B) end,
                   fun() -> erlkaf:committed(Id, A) end,
                   fun() -> erlkaf:position(Id, A) end,
                   fun() -> erlkaf:commit_offsets(Id, A) end]))).

%% Straight into the NIF with the live resource and random arguments.
t_nif_producer_produce(_Config) ->
    {ok, producer, Res, _, _} = erlkaf_registry:lookup(fuzz),
    check(?FORALL({T, Ms, Reply, Want}, {topic(), messages(), oneof([owner, make_ref(), any()]), oneof([true, false, any()])},
        true =:= allowed(fun() ->
            case erlkaf_nif:producer_produce(Res, T, Ms, Reply, Want) of
                {more, _, _} -> ok;
                {error, R, _, _} -> {error, R};
                Other -> Other
            end
        end))).
