%%% Secrets (sasl.password, ssl.key.password, ...) never show up in error terms, logs,
%%% supervisor or crash reports, or sys:get_status.
-module(erlkaf_security_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(SECRET, "hunter2-s3cret").

suite() -> [{timetrap, {seconds, 60}}].
all() -> erlkaf_test_lib:all_t(?MODULE).

init_per_testcase(_Case, Config) ->
    erlkaf_test_lib:start_mock(Config).

end_per_testcase(_Case, Config) ->
    [erlkaf:stop_client(C) || C <- [sec_p, sec_g]],
    erlkaf_test_lib:stop_mock(Config).

%% A logger handler that keeps every formatted event in an ETS table.
capture() ->
    Tab = ets:new(captured, [public, bag]),
    ok = logger:add_handler(sec_capture, ?MODULE, #{config => Tab, level => all}),
    Tab.

log(#{msg := _} = Event, #{config := Tab}) ->
    %% Multi-line: supervisor reports then print the child's start arguments in full.
    ets:insert(Tab, {iolist_to_binary(logger_formatter:format(Event, #{single_line => false, depth => unlimited,
                                                                       chars_limit => unlimited}))}).

leaked(Tab) ->
    [L || {L} <- ets:tab2list(Tab), binary:match(L, <<?SECRET>>) =/= nomatch].

t_secrets_stay_out_of_reports(Config) ->
    Tab = capture(),
    try
        Secrets = [{sasl_password, ?SECRET}, {ssl_key_password, ?SECRET}, {sasl_username, "user"}],
        ok = erlkaf:create_producer(sec_p, [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)} | Secrets]),
        ok = erlkaf:create_consumer_group(sec_g, <<"sec-group">>, [{<<"sec">>, [{callback_module, erlkaf_test_handler},
                                                                               {callback_args, #{pid => self(), tag => s}}]}],
                                          [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)} | Secrets], []),
        %% An invalid value next to a secret: the error names the key, not the secret.
        {error, {invalid_config, _, Msg}} = erlkaf:create_producer(sec_bad, [{sasl_password, ?SECRET}, {linger_ms, -5}]),
        ?assertEqual(nomatch, binary:match(iolist_to_binary(io_lib:format("~p", [Msg])), <<?SECRET>>)),
        [begin
             {ok, _, _, Pid, _} = erlkaf_registry:lookup(C),
             Status = iolist_to_binary(io_lib:format("~p", [sys:get_status(Pid)])),
             ?assertEqual(nomatch, binary:match(Status, <<?SECRET>>)),
             %% A crash: the supervisor reports the child (with its start arguments) and
             %% restarts it.
             exit(Pid, kill),
             erlkaf_test_lib:wait_until(fun() ->
                 case erlkaf_registry:lookup(C) of
                     {ok, _, _, P2, _} -> P2 =/= Pid;
                     _ -> false
                 end
             end, 10000)
         end || C <- [sec_p, sec_g]],
        timer:sleep(500),
        Reports = [L || {L} <- ets:tab2list(Tab), binary:match(L, <<"erlkaf">>) =/= nomatch],
        ct:pal("~p log events, e.g.~n~ts", [length(Reports), lists:last(lists:sort(Reports))]),
        ?assert(length(Reports) > 0),
        ?assertEqual([], leaked(Tab))
    after
        logger:remove_handler(sec_capture)
    end.

%% OAUTHBEARER with the application's refresh callback: it is called (in a process of its
%% own) with sasl_oauthbearer_config, and its answers reach librdkafka, which checks them
%% (the mock has no SASL, so authentication itself cannot be exercised here). Without a
%% callback, librdkafka's own unsecured-JWT mode is left alone.
t_oauthbearer_refresh_callback(Config) ->
    Self = self(),
    Base = [{bootstrap_servers, erlkaf_test_lib:bootstrap(Config)}, {security_protocol, sasl_plaintext},
            {sasl_mechanism, "OAUTHBEARER"}],
    Good = fun(Cfg) ->
        Self ! {refresh, self(), Cfg},
        {ok, <<"token-value">>, erlang:system_time(second) + 3600, <<"alice">>, "traceId=123"}
    end,
    ok = erlkaf:create_producer(sec_p, [{oauthbearer_token_refresh_callback, Good},
                                        {sasl_oauthbearer_config, "scope=test"} | Base]),
    {ok, producer, Res, ClientPid, _} = erlkaf_registry:lookup(sec_p),
    receive {refresh, Pid, <<"scope=test">>} -> ?assertNotEqual(ClientPid, Pid)
    after 5000 -> ct:fail(no_refresh)
    end,
    %% What the refresh process hands to librdkafka, and librdkafka's verdict.
    Later = (erlang:system_time(second) + 3600) * 1000,
    ok = erlkaf_nif:client_oauth_token(Res, {<<"t2">>, Later, <<"alice">>, [{<<"traceId">>, <<"1">>}]}),
    {error, {invalid_config, <<"oauthbearer_token">>, Expired}} =
        erlkaf_nif:client_oauth_token(Res, {<<"t3">>, 1000, <<"alice">>, []}),
    ct:pal("expired token refused: ~ts", [Expired]),
    {error, {invalid_config, <<"oauthbearer_token">>, _}} =
        erlkaf_nif:client_oauth_token(Res, {<<"t4">>, Later, <<"alice">>, [{<<"auth">>, <<"reserved">>}]}),
    ok = erlkaf_nif:client_oauth_token(Res, {error, <<"identity provider down">>}),
    ?assertError(badarg, erlkaf_nif:client_oauth_token(Res, {nonsense})),
    ok = erlkaf:stop_client(sec_p),
    %% The callback's own failure and a bad answer are token failures, not crashes.
    [begin
         ok = erlkaf:create_producer(sec_p, [{oauthbearer_token_refresh_callback, Cb} | Base]),
         receive {refresh, _, _} -> ok after 5000 -> ct:fail(no_refresh) end,
         timer:sleep(200),
         {ok, _, _, _, _} = erlkaf_registry:lookup(sec_p),
         ok = erlkaf:stop_client(sec_p)
     end || Cb <- [fun(C) -> Self ! {refresh, self(), C}, error(boom) end,
                   fun(C) -> Self ! {refresh, self(), C}, {ok, not_a_token} end]],
    %% No callback: librdkafka's unsecured JWT (which it refuses next to a callback).
    ok = erlkaf:create_producer(sec_p, [{enable_sasl_oauthbearer_unsecure_jwt, true},
                                        {sasl_oauthbearer_config, "principal=bob"} | Base]),
    {error, {options, {oauthbearer_token_refresh_callback, _}}} =
        erlkaf:create_producer(sec_bad, [{oauthbearer_token_refresh_callback, fun(_, _) -> ok end} | Base]).

%% TLS and SASL settings reach librdkafka. (No broker available here authenticates:
%% the mock has no SASL and plaintext listeners only, tansu's PyPI build keeps users in
%% memory and needs an authenticated client to create one, noida-db has neither; so this
%% checks that each setting takes effect, and that the secret stays out of the errors.)
t_tls_and_sasl_settings_take_effect(Config) ->
    Self = self(),
    Cb = fun(C, E) -> Self ! {client_error, C, E}, ok end,
    Bootstrap = erlkaf_test_lib:bootstrap(Config),
    %% A CA file that does not exist: refused when the client is created, naming it.
    {error, R1} = erlkaf:create_producer(sec_p, [{bootstrap_servers, Bootstrap}, {security_protocol, ssl},
                                                 {ssl_ca_location, "/nonexistent/ca.pem"}]),
    ct:pal("bad CA: ~p", [R1]),
    ?assertNotEqual(nomatch, binary:match(iolist_to_binary(io_lib:format("~p", [R1])), <<"ca">>)),
    %% TLS towards a plaintext listener: the handshake fails.
    ok = erlkaf:create_producer(sec_p, [{bootstrap_servers, Bootstrap}, {security_protocol, ssl},
                                        {enable_ssl_certificate_verification, false}, {error_callback, Cb}]),
    wait_error(sec_p, [<<"SSL">>, <<"ssl">>]),
    ok = erlkaf:stop_client(sec_p),
    %% SCRAM towards a listener without SASL: librdkafka tries to authenticate.
    ok = erlkaf:create_producer(sec_p, [{bootstrap_servers, Bootstrap}, {security_protocol, sasl_plaintext},
                                        {sasl_mechanism, "SCRAM-SHA-256"}, {sasl_username, "alice"},
                                        {sasl_password, ?SECRET}, {error_callback, Cb}]),
    Reason = wait_error(sec_p, [<<"SASL">>]),
    ?assertEqual(nomatch, binary:match(Reason, <<?SECRET>>)).

%% Waits for an error event whose reason contains one of Words; returns the reason.
wait_error(Client, Words) ->
    receive
        {client_error, Client, {_, _Code, Reason}} ->
            R = iolist_to_binary(Reason),
            case lists:any(fun(W) -> binary:match(R, W) =/= nomatch end, Words) of
                true -> ct:pal("~p: ~ts", [Client, R]), R;
                false -> wait_error(Client, Words)
            end
    after 10000 ->
        ct:fail({no_error_with, Words})
    end.
