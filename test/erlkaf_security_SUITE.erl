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
