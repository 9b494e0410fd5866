%%% @doc An embedded Kafka broker for tests and demos: librdkafka's mock cluster, with real
%%% listeners on 127.0.0.1 that any Kafka client can use, and fault injection.
%%%
%%% The cluster is owned by a process (the caller of `start/1', or `owner' in its
%%% options): when the owner dies, the cluster is destroyed. It needs the NIF only, not a
%%% running erlkaf application.
%%%
%%% ```
%%% {ok, Mock} = erlkaf_mock:start(#{brokers => 3}),
%%% ok = erlkaf_mock:create_topic(Mock, <<"events">>, 4, 3),
%%% Bootstrap = erlkaf_mock:bootstrap_servers(Mock),   % <<"127.0.0.1:41234,...">>
%%% ok = erlkaf_mock:broker_down(Mock, 2),
%%% ok = erlkaf_mock:push_request_errors(Mock, 0, [not_leader_for_partition, request_timed_out]),
%%% ok = erlkaf_mock:stop(Mock).
%%% '''
%%% The mock has no admin APIs (create topics with `create_topic/4', or let them be
%%% auto-created with 4 partitions) and keeps only about 5 MB of log per partition.
-module(erlkaf_mock).
-behaviour(gen_server).

-export([
    start/0, start/1, stop/1,
    bootstrap_servers/1,
    create_topic/4,
    broker_down/2, broker_up/2,
    set_rtt/3,
    push_request_errors/3, clear_request_errors/2,
    set_partition_leader/4,
    set_group_initial_rebalance_delay/2,
    api_key/1
]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-type mock() :: pid().
-type broker() :: pos_integer() | -1.
-type options() :: #{brokers => pos_integer(),
                     owner => pid(),
                     group_initial_rebalance_delay_ms => non_neg_integer(),
                     topics => [{binary(), pos_integer(), pos_integer()}]}.
-export_type([mock/0, options/0]).

%% @equiv start(#{})
-spec start() -> {ok, mock()} | {error, term()}.
start() ->
    start(#{}).

%% @doc Starts a mock cluster. Options: `brokers' (default 1), `owner' (default the
%% caller), `group_initial_rebalance_delay_ms' (default 100; Kafka's is 3000) and
%% `topics' (`[{Name, Partitions, ReplicationFactor}]' created at once).
-spec start(options()) -> {ok, mock()} | {error, term()}.
start(Opts) when is_map(Opts) ->
    Owner = maps:get(owner, Opts, self()),
    gen_server:start(?MODULE, {Owner, Opts}, []);
start(Opts) ->
    {error, {options, Opts}}.

%% @doc Destroys the cluster (its listeners close at once; teardown finishes in the
%% background).
-spec stop(mock()) -> ok.
stop(Mock) ->
    try gen_server:call(Mock, stop, infinity)
    catch exit:{noproc, _} -> ok;
          exit:{normal, _} -> ok
    end.

%% @doc `<<"127.0.0.1:Port1,127.0.0.1:Port2,...">>'.
-spec bootstrap_servers(mock()) -> binary().
bootstrap_servers(Mock) ->
    gen_server:call(Mock, bootstrap_servers, infinity).

%% @doc Creates a topic (the mock has no CreateTopics API).
-spec create_topic(mock(), binary() | string(), pos_integer(), pos_integer()) -> ok | {error, term()}.
create_topic(Mock, Topic, Partitions, ReplicationFactor) ->
    op(Mock, mock_create_topic, [str(Topic), Partitions, ReplicationFactor]).

%% @doc Disconnects a broker (-1: all) and refuses new connections. Leadership does not move.
-spec broker_down(mock(), broker()) -> ok | {error, term()}.
broker_down(Mock, Broker) ->
    op(Mock, mock_broker_down, [Broker]).

%% @doc Lets a broker (-1: all) accept connections again.
-spec broker_up(mock(), broker()) -> ok | {error, term()}.
broker_up(Mock, Broker) ->
    op(Mock, mock_broker_up, [Broker]).

%% @doc Adds `RttMs' to every response of a broker (-1: all).
-spec set_rtt(mock(), broker(), non_neg_integer()) -> ok | {error, term()}.
set_rtt(Mock, Broker, RttMs) ->
    op(Mock, mock_set_rtt, [Broker, RttMs]).

%% @doc The next requests of API `ApiKey' (an integer, or a name such as `produce',
%% `fetch', `metadata', `offset_commit'; see `api_key/1') fail with these errors in order
%% (librdkafka error names: `not_leader_for_partition', `request_timed_out', `transport'...).
-spec push_request_errors(mock(), non_neg_integer() | atom(), [atom()]) -> ok | {error, term()}.
push_request_errors(Mock, ApiKey, Errors) when is_list(Errors) ->
    op(Mock, mock_push_request_errors, [api_key(ApiKey), Errors]).

%% @doc Drops the errors pushed for `ApiKey'.
-spec clear_request_errors(mock(), non_neg_integer() | atom()) -> ok | {error, term()}.
clear_request_errors(Mock, ApiKey) ->
    op(Mock, mock_clear_request_errors, [api_key(ApiKey)]).

%% @doc Moves the leadership of a partition to `Broker' (-1: no leader).
-spec set_partition_leader(mock(), binary() | string(), non_neg_integer(), broker()) -> ok | {error, term()}.
set_partition_leader(Mock, Topic, Partition, Broker) ->
    op(Mock, mock_set_partition_leader, [str(Topic), Partition, Broker]).

%% @doc How long a new consumer group waits for more members before its first rebalance.
-spec set_group_initial_rebalance_delay(mock(), non_neg_integer()) -> ok | {error, term()}.
set_group_initial_rebalance_delay(Mock, Ms) ->
    op(Mock, mock_set_group_initial_rebalance_delay, [Ms]).

%% @doc Kafka API keys by name.
-spec api_key(atom() | non_neg_integer()) -> non_neg_integer().
api_key(K) when is_integer(K) -> K;
api_key(produce) -> 0;
api_key(fetch) -> 1;
api_key(list_offsets) -> 2;
api_key(metadata) -> 3;
api_key(offset_commit) -> 8;
api_key(offset_fetch) -> 9;
api_key(find_coordinator) -> 10;
api_key(join_group) -> 11;
api_key(heartbeat) -> 12;
api_key(leave_group) -> 13;
api_key(sync_group) -> 14;
api_key(api_versions) -> 18;
api_key(init_producer_id) -> 22;
api_key(add_partitions_to_txn) -> 24;
api_key(add_offsets_to_txn) -> 25;
api_key(end_txn) -> 26;
api_key(txn_offset_commit) -> 28;
api_key(Other) -> erlang:error({badarg, {unknown_api_key, Other}}).

op(Mock, Fun, Args) ->
    gen_server:call(Mock, {op, Fun, Args}, infinity).

str(T) when is_binary(T) -> T;
str(T) when is_list(T) -> unicode:characters_to_binary(T).

%% gen_server

init({Owner, Opts}) ->
    Ref = erlang:monitor(process, Owner),
    case erlkaf_nif:mock_new(maps:get(brokers, Opts, 1)) of
        {ok, Res, Bootstrap} ->
            Delay = maps:get(group_initial_rebalance_delay_ms, Opts, 100),
            ok = erlkaf_nif:mock_set_group_initial_rebalance_delay(Res, Delay),
            Topics = [erlkaf_nif:mock_create_topic(Res, str(T), P, R)
                      || {T, P, R} <- maps:get(topics, Opts, [])],
            case [E || E <- Topics, E =/= ok] of
                [] -> {ok, #{res => Res, bootstrap => Bootstrap, owner => Ref}};
                [E | _] -> erlkaf_nif:mock_stop(Res), {stop, E}
            end;
        {error, Reason} ->
            {stop, Reason}
    end.

handle_call(bootstrap_servers, _From, #{bootstrap := B} = S) ->
    {reply, B, S};
handle_call({op, Fun, Args}, _From, #{res := Res} = S) ->
    {reply, apply(erlkaf_nif, Fun, [Res | Args]), S};
handle_call(stop, _From, S) ->
    {stop, normal, ok, S}.

handle_cast(_Msg, S) ->
    {noreply, S}.

handle_info({'DOWN', Ref, process, _, _}, #{owner := Ref} = S) ->
    {stop, normal, S};
handle_info(_Other, S) ->
    {noreply, S}.

terminate(_Reason, #{res := Res}) ->
    erlkaf_nif:mock_stop(Res).
