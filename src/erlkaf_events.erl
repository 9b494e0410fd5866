%%% @doc What a client process does with librdkafka's events: log lines go to OTP
%%% `logger' (level-mapped, with the client id and facility as metadata), errors to the
%%% `error_callback' and the logger, statistics to the `stats_callback'. Shared by the
%%% producer and group processes.
-module(erlkaf_events).

-export([handle/3, log_level/1]).

-type callbacks() :: #{error_callback := undefined | module() | fun((term(), term()) -> any()),
                       stats_callback := undefined | module() | fun((term(), map() | binary()) -> any())}.
-export_type([callbacks/0]).

%% @doc Handles one `{erlkaf_event, Event}' payload; returns `{stats, Stats}' for
%% statistics (so the caller can keep the last one), else `ok'. Stats are librdkafka's
%% statistics JSON read by the NIF into maps with binary keys.
-spec handle(tuple(), term(), callbacks()) -> ok | {stats, map() | binary()}.
handle({log, Level, Facility, Text}, ClientId, _Callbacks) ->
    logger:log(log_level(Level), "erlkaf ~p [~ts] ~ts", [ClientId, Facility, Text],
               #{client_id => ClientId, facility => Facility, domain => [erlkaf]});
handle({error, Code, Fatal, Reason}, ClientId, Callbacks) ->
    %% Non-fatal error events mostly repeat a log line librdkafka emitted already
    %% (connection refused, all brokers down) and librdkafka recovers by itself.
    Level = case Fatal of true -> error; false -> notice end,
    logger:log(Level, "erlkaf ~p: ~p ~ts", [ClientId, Code, Reason], #{client_id => ClientId, domain => [erlkaf]}),
    Kind = case Fatal of true -> fatal; false -> error end,
    erlkaf_telemetry:execute([erlkaf, error], #{count => 1}, #{client_id => ClientId, kind => Kind, code => Code, reason => Reason}),
    call(maps:get(error_callback, Callbacks), error_callback, ClientId, {Kind, Code, Reason});
handle({consume_error, Topic, Partition, Code, Reason} = E, ClientId, Callbacks) ->
    logger:error("erlkaf ~p: consume error on ~ts/~p: ~p ~ts", [ClientId, Topic, Partition, Code, Reason],
                 #{client_id => ClientId, domain => [erlkaf]}),
    erlkaf_telemetry:execute([erlkaf, error], #{count => 1},
                             #{client_id => ClientId, kind => consume_error, code => Code, reason => Reason}),
    call(maps:get(error_callback, Callbacks), error_callback, ClientId, E);
handle({stats, Stats}, ClientId, Callbacks) ->
    Measurements = case Stats of
        #{} -> maps:filter(fun(_, V) -> is_number(V) end,
                           maps:from_list([{binary_to_atom(K), V} || K <- [<<"msg_cnt">>, <<"msg_size">>, <<"tx">>, <<"rx">>,
                                                                          <<"txmsgs">>, <<"rxmsgs">>],
                                                                     V <- [maps:get(K, Stats, undefined)]]));
        _ -> #{}
    end,
    erlkaf_telemetry:execute([erlkaf, stats], Measurements, #{client_id => ClientId, stats => Stats}),
    call(maps:get(stats_callback, Callbacks), stats_callback, ClientId, Stats),
    {stats, Stats}.

call(undefined, _Name, _ClientId, _Arg) ->
    ok;
call(Callback, Name, ClientId, Arg) ->
    try
        case Callback of
            F when is_function(F, 2) -> F(ClientId, Arg);
            M when is_atom(M) -> M:Name(ClientId, Arg)
        end,
        ok
    catch
        Class:Reason:Stack ->
            logger:error("erlkaf ~p: ~p failed: ~p:~p ~p", [ClientId, Name, Class, Reason, Stack],
                         #{client_id => ClientId, domain => [erlkaf]})
    end.

%% @doc syslog levels (librdkafka's) as logger levels.
-spec log_level(integer()) -> logger:level().
log_level(L) when L =< 0 -> emergency;
log_level(1) -> alert;
log_level(2) -> critical;
log_level(3) -> error;
log_level(4) -> warning;
log_level(5) -> notice;
log_level(6) -> info;
log_level(_) -> debug.
