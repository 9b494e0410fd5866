%%% @doc Helpers shared by the suites: unique topics, a mock cluster per suite, a producer
%%% whose delivery reports come back to the test process, and a report collector.
-module(erlkaf_test_lib).

-include_lib("common_test/include/ct.hrl").
-include("erlkaf.hrl").

-export([
    unique_topic/1, start_mock/1, stop_mock/1, bootstrap/1,
    reporting_producer/3, collect_reports/2, all_t/1, wait_until/2, gc_all/0
]).

%% @doc A topic name no other case uses.
unique_topic(Prefix) ->
    iolist_to_binary([atom_to_list(Prefix), "-", integer_to_list(erlang:unique_integer([positive]))]).

%% @doc Starts erlkaf and a mock cluster owned by a long-lived helper process (CT runs
%% init_per_suite and the cases in different processes).
start_mock(Config) ->
    ok = erlkaf:start(),
    Owner = spawn(fun() -> receive stop -> ok end end),
    {ok, Mock} = erlkaf_mock:start(#{brokers => proplists:get_value(brokers, Config, 1), owner => Owner}),
    [{mock, Mock}, {mock_owner, Owner} | Config].

stop_mock(Config) ->
    erlkaf_mock:stop(?config(mock, Config)),
    ?config(mock_owner, Config) ! stop,
    ok.

bootstrap(Config) ->
    erlkaf_mock:bootstrap_servers(?config(mock, Config)).

%% @doc A producer whose reports are sent to the calling process as
%% `{dr, ClientId, MsgRef, Status, #erlkaf_msg{}}'.
reporting_producer(ClientId, Config, Extra) ->
    Self = self(),
    Cb = fun(Ref, Status, Msg) -> Self ! {dr, ClientId, Ref, Status, Msg}, ok end,
    ok = erlkaf:create_producer(ClientId, [{bootstrap_servers, bootstrap(Config)},
                                           {linger_ms, 2},
                                           {delivery_report_callback, Cb} | Extra]).

%% @doc Collects the reports of `Refs' (in any order); fails listing the missing ones.
collect_reports(ClientId, Refs) ->
    collect(ClientId, maps:from_list([{R, true} || R <- Refs]), #{}).

collect(_ClientId, Want, Got) when map_size(Want) =:= 0 ->
    Got;
collect(ClientId, Want, Got) ->
    receive
        {dr, ClientId, Ref, Status, Msg} ->
            case maps:is_key(Ref, Got) of
                true -> ct:fail({duplicate_report, Ref, Status, Msg});
                false -> ok
            end,
            collect(ClientId, maps:remove(Ref, Want), Got#{Ref => {Status, Msg}})
    after 20000 ->
        ct:fail({missing_reports, map_size(Want), maps:size(Got)})
    end.

%% @doc Every exported `t_*/1' of a suite.
all_t(Module) ->
    [F || {F, 1} <- Module:module_info(exports), lists:prefix("t_", atom_to_list(F))].

%% @doc Polls `Fun' until it returns true, for up to `Ms'.
wait_until(Fun, Ms) when Ms =< 0 ->
    Fun() orelse ct:fail(wait_until_timeout);
wait_until(Fun, Ms) ->
    case Fun() of
        true -> true;
        false -> timer:sleep(50), wait_until(Fun, Ms - 50)
    end.

%% @doc Garbage-collects every process (so dropped resources are released).
gc_all() ->
    [erlang:garbage_collect(P) || P <- processes()],
    ok.
