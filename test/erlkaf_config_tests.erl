-module(erlkaf_config_tests).

-include_lib("eunit/include/eunit.hrl").

translates_atoms_to_dotted_names_test() ->
    {ok, Props, Opts} = erlkaf_config:client([
        {bootstrap_servers, "a:9092,b:9092"},
        {linger_ms, 5},
        {enable_idempotence, true},
        {builtin_features, <<"gzip">>},
        {enabled_events, 0},
        {<<"socket.timeout.ms">>, 1000},
        {"queue.buffering.max.ms", 0.5},
        {delivery_report_only_error, true}
    ]),
    ?assertEqual([
        {<<"bootstrap.servers">>, <<"a:9092,b:9092">>},
        {<<"linger.ms">>, <<"5">>},
        {<<"enable.idempotence">>, <<"true">>},
        {<<"builtin.features">>, <<"gzip">>},
        {<<"enabled_events">>, <<"0">>},
        {<<"socket.timeout.ms">>, <<"1000">>},
        {<<"queue.buffering.max.ms">>, <<"0.5">>}
    ], Props),
    ?assertEqual(true, maps:get(delivery_report_only_error, Opts)).

unknown_key_and_bad_value_type_test() ->
    ?assertEqual({error, {options, {no_such_option, 1}}}, erlkaf_config:client([{no_such_option, 1}])),
    ?assertEqual({error, {options, {linger_ms, {1, 2}}}}, erlkaf_config:client([{linger_ms, {1, 2}}])),
    ?assertEqual({error, {options, not_a_pair}}, erlkaf_config:client([not_a_pair])),
    ?assertEqual({error, {options, {queue_buffering_overflow_strategy, panic}}},
                 erlkaf_config:client([{queue_buffering_overflow_strategy, panic}])),
    ?assertEqual({error, {options, {delivery_report_priority, max}}},
                 erlkaf_config:client([{delivery_report_priority, max}])).

delivery_report_priority_is_high_unless_set_test() ->
    {ok, _, Default} = erlkaf_config:client([]),
    ?assertEqual(high, maps:get(delivery_report_priority, Default)),
    {ok, _, Normal} = erlkaf_config:client([{delivery_report_priority, normal}]),
    ?assertEqual(normal, maps:get(delivery_report_priority, Normal)).

topic_config_refuses_client_keys_test() ->
    ?assertEqual({ok, [{<<"request.required.acks">>, <<"1">>}]},
                 erlkaf_config:topic([{request_required_acks, 1}])),
    ?assertEqual({error, {options, {bootstrap_servers, "x"}}},
                 erlkaf_config:topic([{bootstrap_servers, "x"}])).

global_options_merge_client_wins_test() ->
    application:set_env(erlkaf, global_client_options, [{linger_ms, 1}, {client_id, <<"g">>}]),
    try
        {ok, Props, _} = erlkaf_config:client([{linger_ms, 7}]),
        ?assertEqual([{<<"linger.ms">>, <<"7">>}, {<<"client.id">>, <<"g">>}], Props)
    after
        application:unset_env(erlkaf, global_client_options)
    end.

user_key_maps_back_test() ->
    ?assertEqual(linger_ms, erlkaf_config:user_key([{linger_ms, x}], <<"linger.ms">>)),
    ?assertEqual(<<"x.y">>, erlkaf_config:user_key([], <<"x.y">>)).

%% Every generated property name is one librdkafka knows (the table cannot drift).
generated_table_matches_librdkafka_test() ->
    Unknown = [Name || {_, Name, Scope, _, Type, _, _} <- erlkaf_properties:all(),
                       Type =/= <<"see dedicated API">>,
                       not known(Scope, Name)],
    ?assertEqual([], Unknown).

known(Scope, Name) ->
    case erlkaf_nif:config_check(Scope, [{Name, <<"definitely not a valid value \x01">>}]) of
        ok -> true;
        {error, {invalid_config, Name, Msg}} -> binary:match(Msg, <<"No such configuration property">>) =:= nomatch
    end.

%% docs/CONFIGURATION.md is what the option table renders (run `make docs` after a change).
configuration_doc_is_current_test() ->
    File = doc_file(filename:dirname(code:which(erlkaf))),
    {ok, OnDisk} = file:read_file(File),
    ?assert(OnDisk =:= erlkaf_config_doc:markdown()),
    %% And every option is in it.
    [?assertNotEqual(nomatch, binary:match(OnDisk, <<"`", (atom_to_binary(K))/binary, "`">>))
     || K <- erlkaf_config:erlkaf_keys() ++ [A || {A, _, _, _, _, _, _} <- erlkaf_properties:all()]].

doc_file("/") -> error(no_docs_dir);
doc_file(Dir) ->
    F = filename:join([Dir, "docs", "CONFIGURATION.md"]),
    case filelib:is_regular(F) of
        true -> F;
        false -> doc_file(filename:dirname(Dir))
    end.
