%%% The handler of the idle-partition latency figure: reports the handling time of each
%%% message (its value is the sequence number) to the bench process.
-module(erlkaf_bench_idle).
-behaviour(erlkaf_consumer).
-include_lib("erlkaf/include/erlkaf.hrl").
-export([init/4, handle_message/2]).

init(_Topic, _Partition, _Offset, _Args) ->
    {ok, persistent_term:get({erlkaf_bench, idle})}.

handle_message(#erlkaf_msg{value = V}, Pid) ->
    Pid ! {idle_handled, binary_to_integer(V), erlang:monotonic_time(microsecond)},
    {ok, Pid}.
