%%% @doc The producer callback behaviour (the seed's `erlkaf_producer').
%%%
%%% Give the module as `delivery_report_callback' in the producer config. Its callbacks
%%% run in the client's producer process, once per message, in the order librdkafka
%%% reports them; a crash or a non-`ok' return is logged and does not stop the client.
%%%
%%% ```
%%% -module(my_reports).
%%% -behaviour(erlkaf_producer).
%%% -export([delivery_report/3]).
%%% delivery_report(MsgRef, ok, #erlkaf_msg{partition = P, offset = O}) -> ok;
%%% delivery_report(MsgRef, {error, Reason}, Msg) -> logger:warning("~p", [Reason]), ok.
%%% '''
-module(erlkaf_producer).

-include("erlkaf.hrl").

%% `MsgRef' is what `erlkaf:produce*' returned for the message; Status is `ok' or
%% `{error, Reason}' with Reason a librdkafka error name such as `msg_timed_out',
%% `purge_queue' (the client stopped before delivery) or `msg_size_too_large'.
-callback delivery_report(MsgRef :: erlkaf:msg_ref() | undefined,
                          Status :: ok | {error, atom()},
                          Message :: #erlkaf_msg{}) -> any().

%% erlkaf 2.x form, used when `delivery_report/3' is not exported.
-callback delivery_report(Status :: ok | {error, atom()}, Message :: #erlkaf_msg{}) -> any().

%% Called with librdkafka's statistics (as a JSON binary) every `statistics_interval_ms'
%% when the module is the client's `stats_callback'.
-callback stats_callback(ClientId :: atom(), Stats :: map()) -> any().

-optional_callbacks([delivery_report/3, delivery_report/2, stats_callback/2]).
