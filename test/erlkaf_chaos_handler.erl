%%% Handler of the consumer chaos case: records every handled {Partition, Offset} and its
%%% worker pid (so that the test can kill workers).
-module(erlkaf_chaos_handler).
-behaviour(erlkaf_consumer).

-include("erlkaf.hrl").

-export([init/4, handle_message/2]).

init(_Topic, Partition, _Offset, _Args) ->
    {Handled, Workers} = persistent_term:get({erlkaf_faults_SUITE, chaos}),
    ets:insert(Workers, {Partition, self()}),
    {ok, Handled}.

handle_message(Msgs, Handled) ->
    ets:insert(Handled, [{{P, O}} || #erlkaf_msg{partition = P, offset = O} <- Msgs]),
    {ok, Handled}.
