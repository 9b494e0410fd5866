%%% A handler that spends 8 s on the first message of partition 0.
-module(erlkaf_long_handler).
-behaviour(erlkaf_consumer).
-include("erlkaf.hrl").
-export([init/4, handle_message/2]).

init(_Topic, Partition, _Offset, Pid) ->
    Pid ! {long_init, Partition},
    {ok, Pid}.

handle_message(#erlkaf_msg{partition = P, offset = O}, Pid) ->
    case {P, O} of
        {0, 0} -> timer:sleep(8000);
        _ -> ok
    end,
    Pid ! {long_handled, P, O},
    {ok, Pid}.
