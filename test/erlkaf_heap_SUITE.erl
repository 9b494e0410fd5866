%%% The NIF's heap (native/erlkaf_core/src/heap.rs): mimalloc by default, glibc's malloc
%%% when asked for; either way every message produced is reported once and nothing is left.
-module(erlkaf_heap_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

suite() -> [{timetrap, {seconds, 120}}].
all() -> erlkaf_test_lib:all_t(?MODULE).

t_mimalloc_by_default(_Config) ->
    ?assertEqual(false, os:getenv("ERLKAF_ALLOCATOR")),
    ?assertEqual(mimalloc, maps:get(allocator, erlkaf_nif:nif_counters())).

%% A VM started with ERLKAF_ALLOCATOR=system, and one with the application setting:
%% produce and consume through the embedded broker there.
t_system_heap_by_environment(_Config) ->
    in_peer([{"ERLKAF_ALLOCATOR", "system"}], [], system).

t_system_heap_by_application_setting(_Config) ->
    in_peer([], ["-erlkaf", "allocator", "system"], system).

t_mimalloc_heap_in_a_fresh_vm(_Config) ->
    in_peer([], [], mimalloc).

in_peer(Env, Args, Expected) ->
    Paths = lists:append([["-pa", P] || P <- code:get_path(), string:find(P, "_build") =/= nomatch]),
    {ok, Peer, _} = peer:start_link(#{connection => standard_io, env => Env, args => Paths ++ Args}),
    try
        ?assertEqual({Expected, 2000, 0}, peer:call(Peer, ?MODULE, round_trip, [], 60000))
    after
        peer:stop(Peer)
    end.

%% Runs in the peer: 2000 messages produced (half one by one, half in a batch), each
%% reported once to this process.
round_trip() ->
    ok = erlkaf:start(),
    {ok, Mock} = erlkaf_mock:start(#{brokers => 1}),
    Bootstrap = erlkaf_mock:bootstrap_servers(Mock),
    Self = self(),
    ok = erlkaf:create_producer(heap_p, [{bootstrap_servers, Bootstrap},
                                         {delivery_report_callback, fun(_Ref, S, _M) -> Self ! {dr, S} end}]),
    Values = [integer_to_binary(I) || I <- lists:seq(1, 1000)],
    _ = [{ok, _} = erlkaf:produce(heap_p, <<"heap">>, undefined, V) || V <- Values],
    {ok, _} = erlkaf:produce_batch(heap_p, <<"heap">>, Values),
    Oks = length([ok || _ <- lists:seq(1, 2000), receive {dr, ok} -> true after 10000 -> false end]),
    Extra = receive {dr, _} -> 1 after 200 -> 0 end,
    ok = erlkaf:stop_client(heap_p),
    ok = erlkaf_mock:stop(Mock),
    {maps:get(allocator, erlkaf_nif:nif_counters()), Oks, Extra}.
