%%% @doc `telemetry' events, emitted when the `telemetry' library is present at run time
%%% (erlkaf does not depend on it: nothing is needed when it is absent, and each event
%%% then costs one `persistent_term' read). Presence is checked when a client starts.
%%%
%%% | Event | Measurements | Metadata |
%%% |---|---|---|
%%% | `[erlkaf, produce_batch]' | `count', `bytes' (binary values), `duration' (native units) | `client_id', `topic', `result' (`ok' or the error) |
%%% | `[erlkaf, delivery]' | `ok', `error' (reports in one batch from the NIF) | `client_id' |
%%% | `[erlkaf, consume, batch]' | `count', `duration' (native units, handler time) | `client_id', `topic', `partition', `result' (`ok', `error', `stop') |
%%% | `[erlkaf, rebalance]' | `count' (partitions) | `client_id', `kind' (`assigned', `revoked'), `partitions' |
%%% | `[erlkaf, stats]' | `msg_cnt', `msg_size', `tx', `rx', `txmsgs', `rxmsgs' (whichever librdkafka reports) | `client_id', `stats' (the whole map) |
%%% | `[erlkaf, error]' | `count' (1) | `client_id', `kind' (`error', `fatal', `consume_error'), `code', `reason' |
%%%
%%% `produce/4..7' emit no per-message event: it would cost more than the produce itself;
%%% `[erlkaf, delivery]' counts every message once it is delivered.
-module(erlkaf_telemetry).

-export([execute/3, refresh/0, enabled/0]).

-define(KEY, {?MODULE, enabled}).

%% @doc Emits `Event' when telemetry is present.
-spec execute([atom()], map(), map()) -> ok.
execute(Event, Measurements, Metadata) ->
    case persistent_term:get(?KEY, false) of
        true ->
            _ = telemetry:execute(Event, Measurements, Metadata),
            ok;
        false ->
            ok
    end.

%% @doc Looks again whether telemetry is present (at each client start).
-spec refresh() -> boolean().
refresh() ->
    On = code:ensure_loaded(telemetry) =:= {module, telemetry} andalso erlang:function_exported(telemetry, execute, 3),
    case persistent_term:get(?KEY, undefined) of
        On -> ok;
        _ -> persistent_term:put(?KEY, On)
    end,
    On.

%% @doc True when events are emitted.
-spec enabled() -> boolean().
enabled() ->
    persistent_term:get(?KEY, false).
