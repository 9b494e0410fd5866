%%% A handler that takes 50 ms per message and announces its worker process.
-module(erlkaf_slow_handler).
-behaviour(erlkaf_consumer).
-export([init/4, handle_message/2]).

init(_Topic, _Partition, _Offset, Pid) ->
    Pid ! {slow_worker, self()},
    {ok, Pid}.

handle_message(_Msg, Pid) ->
    timer:sleep(50),
    {ok, Pid}.
