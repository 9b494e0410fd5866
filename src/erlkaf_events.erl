%%% @doc What a client process does with librdkafka's events: log lines go to OTP
%%% `logger' (level-mapped, with the client id and facility as metadata), errors to the
%%% `error_callback' and the logger, statistics to the `stats_callback'. Shared by the
%%% producer and group processes.
-module(erlkaf_events).

-export([handle/3, log_level/1, oauth_refresh/4]).

-type callbacks() :: #{error_callback := undefined | module() | fun((term(), term()) -> any()),
                       oauthbearer_token_refresh_callback => undefined | module() | fun((binary()) -> term()),
                       stats_callback := undefined | module() | fun((term(), map() | binary()) -> any())}.
-export_type([callbacks/0]).

%% @doc Handles one `{erlkaf_event, Event}' payload; returns `{stats, Stats}' for
%% statistics (so the caller can keep the last one), else `ok'. Stats are librdkafka's
%% statistics JSON read by the NIF into maps with binary keys.
-spec handle(tuple(), term(), callbacks()) -> ok | {stats, map() | binary()} | {oauth_refresh, binary()}.
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
handle({oauthbearer_token_refresh, Config}, _ClientId, _Callbacks) ->
    {oauth_refresh, Config};
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

%% @doc Asks the application's `oauthbearer_token_refresh_callback' for a token, in a
%% process of its own (it may call an identity provider), and hands the answer to the
%% client `Res'. A crash or a bad answer is a token failure (librdkafka retries later).
-spec oauth_refresh(reference(), binary(), module() | fun((binary()) -> term()) | undefined, term()) -> ok.
oauth_refresh(_Res, _Config, undefined, _ClientId) ->
    ok;
oauth_refresh(Res, Config, Callback, ClientId) ->
    _ = spawn(fun() ->
        Answer = try token(Callback, Config)
                 catch Class:Reason -> {error, iolist_to_binary(io_lib:format("callback failed: ~p:~p", [Class, Reason]))}
                 end,
        case erlkaf_nif:client_oauth_token(Res, Answer) of
            ok -> ok;
            {error, Why} ->
                logger:error("erlkaf ~p: OAUTHBEARER token refused: ~p", [ClientId, Why],
                             #{client_id => ClientId, domain => [erlkaf]})
        end
    end),
    ok.

token(Callback, Config) ->
    R = case Callback of
        F when is_function(F, 1) -> F(Config);
        M when is_atom(M) -> M:oauthbearer_token_refresh_callback(Config)
    end,
    case R of
        {ok, Token, ExpirySec, Principal} -> token(Token, ExpirySec, Principal, []);
        {ok, Token, ExpirySec, Principal, Ext} -> token(Token, ExpirySec, Principal, extensions(Ext));
        {error, Reason} when is_binary(Reason); is_list(Reason) -> {error, iolist_to_binary(Reason)};
        {error, Reason} -> {error, iolist_to_binary(io_lib:format("~p", [Reason]))};
        Other -> {error, iolist_to_binary(io_lib:format("bad callback answer: ~p", [Other]))}
    end.

token(Token, ExpirySec, Principal, Ext) when is_integer(ExpirySec) ->
    {iolist_to_binary(Token), ExpirySec * 1000, iolist_to_binary(Principal), Ext}.

%% "k1=v1,k2=v2" (the original erlkaf's form), a list of pairs, or a map.
extensions(M) when is_map(M) -> extensions(maps:to_list(M));
extensions([{_, _} | _] = L) -> [{iolist_to_binary(K), iolist_to_binary(V)} || {K, V} <- L];
extensions([]) -> [];
extensions(S) ->
    [list_to_tuple([iolist_to_binary(P) || P <- string:split(KV, "=")])
     || KV <- string:lexemes(unicode:characters_to_list(S), ","), string:find(KV, "=") =/= nomatch].
