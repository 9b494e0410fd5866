%%% Clients started from the application environment (the seed's `sys.config' format).
-module(erlkaf_sys_config_clients_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

suite() -> [{timetrap, {seconds, 60}}].
all() -> erlkaf_test_lib:all_t(?MODULE).

init_per_suite(Config) ->
    application:stop(erlkaf),
    {ok, Mock} = erlkaf_mock:start(#{owner => spawn(fun() -> receive stop -> ok end end)}),
    [{mock, Mock} | Config].

end_per_suite(Config) ->
    erlkaf_mock:stop(?config(mock, Config)).

end_per_testcase(_Case, _Config) ->
    application:stop(erlkaf),
    application:unset_env(erlkaf, clients),
    ok.

t_producers_from_sys_config_start_with_the_app(Config) ->
    B = erlkaf_mock:bootstrap_servers(?config(mock, Config)),
    application:load(erlkaf),
    application:set_env(erlkaf, clients, [
        {sys_p1, [{type, producer},
                  {topics, [{<<"sys1">>, [{request_required_acks, 1}]}, <<"sys2">>]},
                  {client_options, [{bootstrap_servers, B}]}]}
    ]),
    ok = erlkaf:start(),
    {ok, _, _} = erlkaf:produce_sync(sys_p1, <<"sys1">>, <<"k">>, <<"v">>),
    {ok, _, _} = erlkaf:produce_sync(sys_p1, <<"sys2">>, <<"k">>, <<"v">>),
    %% The topic handles exist already: they were created at start.
    {error, already_exists} = erlkaf:create_topic(sys_p1, <<"sys1">>).

t_consumers_from_sys_config_start_with_the_app(Config) ->
    Mock = ?config(mock, Config),
    B = erlkaf_mock:bootstrap_servers(Mock),
    ok = erlkaf_mock:create_topic(Mock, <<"sysc">>, 2, 1),
    application:load(erlkaf),
    application:set_env(erlkaf, clients, [
        {sys_p2, [{type, producer}, {client_options, [{bootstrap_servers, B}]}]},
        {sys_c1, [{type, consumer},
                  {group_id, <<"sys-group">>},
                  {topics, [{<<"sysc">>, [{callback_module, erlkaf_test_handler},
                                          {callback_args, #{pid => self(), tag => sys}}]}]},
                  {topic_options, [{auto_offset_reset, earliest}]},
                  {client_options, [{bootstrap_servers, B}, {fetch_wait_max_ms, 10}]}]}
    ]),
    ok = erlkaf:start(),
    {ok, P, O} = erlkaf:produce_sync(sys_p2, <<"sysc">>, <<"k">>, <<"from-sys-config">>),
    receive {handled, sys, <<"sysc">>, P, O, <<"from-sys-config">>} -> ok
    after 20000 -> ct:fail(not_consumed)
    end.

t_misconfigured_client_stops_the_start_with_a_reason(_Config) ->
    application:load(erlkaf),
    application:set_env(erlkaf, clients, [{bad, [{type, producer}, {client_options, [{linger_ms, banana}]}]}]),
    {error, {erlkaf, {{client_start_failed, bad, {invalid_config, linger_ms, _}}, _}}} = erlkaf:start(),
    application:set_env(erlkaf, clients, [{bad2, [{type, nonsense}]}]),
    {error, {erlkaf, {{client_start_failed, bad2, {unsupported_client_type, nonsense}}, _}}} = erlkaf:start().
