%%% @doc Starts the clients of the `clients' application environment (the seed's
%%% `sys.config' format). Any error stops the application start with a readable reason:
%%% `{client_start_failed, ClientId, Reason}'.
-module(erlkaf_sys_config).

-export([start_clients/1]).

-spec start_clients(list()) -> ok | {error, term()}.
start_clients([]) ->
    ok;
start_clients([{ClientId, Opts} | Rest]) when is_atom(ClientId), is_list(Opts) ->
    case start_client(ClientId, proplists:get_value(type, Opts), Opts) of
        ok -> start_clients(Rest);
        {error, Reason} -> {error, {client_start_failed, ClientId, Reason}}
    end;
start_clients([Other | _]) ->
    {error, {invalid_client_entry, Other}}.

start_client(ClientId, producer, Opts) ->
    case erlkaf:create_producer(ClientId, proplists:get_value(client_options, Opts, [])) of
        ok -> create_topics(ClientId, proplists:get_value(topics, Opts, []));
        Error -> Error
    end;
start_client(ClientId, consumer, Opts) ->
    case proplists:get_value(group_id, Opts) of
        undefined ->
            {error, {missing, group_id}};
        GroupId ->
            erlkaf:create_consumer_group(ClientId, iolist_to_binary(GroupId),
                                         proplists:get_value(topics, Opts, []),
                                         proplists:get_value(client_options, Opts, []),
                                         proplists:get_value(topic_options, Opts, []))
    end;
start_client(_ClientId, Type, _Opts) ->
    {error, {unsupported_client_type, Type}}.

create_topics(_ClientId, []) ->
    ok;
create_topics(ClientId, [{Topic, TopicOpts} | Rest]) ->
    case erlkaf:create_topic(ClientId, Topic, TopicOpts) of
        ok -> create_topics(ClientId, Rest);
        Error -> Error
    end;
create_topics(ClientId, [Topic | Rest]) when is_binary(Topic) ->
    create_topics(ClientId, [{Topic, []} | Rest]).
