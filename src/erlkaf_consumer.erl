%%% @doc The consumer callback behaviour (the seed's `erlkaf_consumer').
%%%
%%% One process per assigned partition calls these callbacks, in offset order.
%%%
%%% ```
%%% -module(my_handler).
%%% -behaviour(erlkaf_consumer).
%%% -include_lib("erlkaf/include/erlkaf.hrl").
%%% -export([init/4, handle_message/2]).
%%% init(_Topic, _Partition, _Offset, Args) -> {ok, Args}.
%%% handle_message(#erlkaf_msg{value = V}, State) -> io:format("~s~n", [V]), {ok, State}.
%%% '''
-module(erlkaf_consumer).

-include("erlkaf.hrl").

%% Called in the new partition process when the partition is assigned (again after each
%% rebalance that gives it to this member). `Offset' is the assignment's start offset
%% (-1001: the committed offset, or `auto_offset_reset' when there is none). The
%% partitions' `init/4' calls run side by side and hold nothing else up (a slow one delays
%% only its own partition). Anything but `{ok, State}' (or an exception) pauses the
%% partition until the next rebalance, with an error logged.
-callback init(Topic :: binary(), Partition :: non_neg_integer(), Offset :: integer(), Args :: term()) ->
    {ok, State :: term()}.

%% One message (`one_by_one' dispatch) or a list of messages of one partition
%% (`{batch, N}'). `{ok, State}': processed, the offset is stored and committed later.
%% `{error, Reason, State}' or an exception: the same message (or batch) is retried with
%% backoff; after `max_retries' it goes to `handle_failed_message/2' (when exported) and is
%% skipped. `{stop, Reason, State}': the partition process stops without storing this
%% offset, and the partition is paused until the next rebalance.
-callback handle_message(Message :: #erlkaf_msg{} | [#erlkaf_msg{}], State :: term()) ->
    {ok, State :: term()} | {error, Reason :: term(), State :: term()} | {stop, Reason :: term(), State :: term()}.

%% Dead-letter hook: called with the message (or batch) that failed `max_retries' times.
-callback handle_failed_message(Message :: #erlkaf_msg{} | [#erlkaf_msg{}], State :: term()) ->
    {ok, State :: term()}.

-optional_callbacks([handle_failed_message/2]).
