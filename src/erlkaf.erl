%%% @doc erlkaf: a Kafka client for Erlang and Elixir, a Rust NIF over librdkafka.
%%%
%%% This module is the public API. Producing never waits on Kafka: `produce*' hands the
%%% message to librdkafka and returns a `MsgRef'; the delivery report arrives later
%%% through the client's `delivery_report_callback' (see `erlkaf_producer'). A value
%%% given as one binary is passed to librdkafka by reference (no copy).
%%%
%%% ```
%%% ok = erlkaf:start(),
%%% ok = erlkaf:create_producer(client1, [{bootstrap_servers, "127.0.0.1:9092"},
%%%                                       {delivery_report_callback, my_reports}]),
%%% {ok, MsgRef} = erlkaf:produce(client1, <<"topic">>, <<"key">>, <<"value">>),
%%% {ok, Partition, Offset} = erlkaf:produce_sync(client1, <<"topic">>, undefined, <<"v">>).
%%% '''
-module(erlkaf).

-include("erlkaf.hrl").

%% Application
-export([start/0, start/1, stop/0]).
%% Clients
-export([create_producer/2, create_topic/2, create_topic/3, stop_client/1, producer_info/1, get_stats/1,
         start_producer_link/2, start_consumer_group_link/5]).
%% Consumer groups
-export([create_consumer_group/5, create_consumer_group/6, assignment/1, commit_offsets/1,
         commit_offsets/2, pause/3, resume/3, seek/4, committed/1, committed/2, position/1,
         position/2]).
%% Metadata and offsets (producers and consumers)
-export([get_metadata/1, get_metadata/2, get_partitions_count/2, query_watermark_offsets/3,
         query_watermark_offsets/4, offsets_for_times/2, offsets_for_times/3, consumer_lag/1]).
%% Admin (producers and consumers)
-export([create_topics/2, create_topics/3, delete_topics/2, delete_topics/3, create_partitions/2,
         create_partitions/3, list_groups/1, list_groups/2, describe_groups/2, describe_groups/3,
         describe_configs/2, describe_configs/3, delete_records/2, delete_records/3]).
%% Transactions
-export([init_transactions/1, init_transactions/2, begin_transaction/1, commit_transaction/1,
         commit_transaction/2, abort_transaction/1, abort_transaction/2,
         send_offsets_to_transaction/3, send_offsets_to_transaction/4]).
%% Producer API
-export([
    produce/4, produce/5, produce/6, produce/7,
    produce_batch/3, produce_batch/4,
    produce_sync/4, produce_sync/5,
    flush/2
]).

-type client_id() :: atom().
-type topic() :: binary().
-type key() :: undefined | iodata().
-type value() :: undefined | iodata().
-type partition() :: integer().
-type headers() :: undefined | [{iodata() | atom() | integer(), undefined | iodata() | atom() | integer()}]
                 | #{iodata() | atom() => undefined | iodata() | atom() | integer()}.
-type timestamp() :: non_neg_integer().
%% A MsgRef: a positive integer naming one produced message, unique within the VM (across
%% producers); the message's delivery report carries it. It grows per calling scheduler
%% and starts, per VM, above what a VM started earlier handed out (see the README).
-type msg_ref() :: pos_integer().
-type batch_message() :: value()
                       | {key(), value()}
                       | #{key => key(), value => value(), headers => headers(),
                           partition => partition(), timestamp => timestamp()}.
-type produce_error() :: queue_full | client_stopped | undefined_client | not_a_producer
                       | {badarg, key | value | headers | partition | timestamp | message | topic}
                       | atom().
-type client_option() :: {atom() | binary() | string(), term()}.
-type topic_option() :: {atom() | binary() | string(), term()}.

-export_type([client_id/0, topic/0, key/0, value/0, partition/0, headers/0, timestamp/0,
              msg_ref/0, batch_message/0, produce_error/0, client_option/0, topic_option/0]).
-type new_topic() :: {topic(), Partitions :: integer(), ReplicationFactor :: integer()}
                   | {topic(), integer(), integer(), [{atom() | iodata(), atom() | iodata() | integer()}]}
                   | #{name := topic(), partitions => integer(), replication_factor => integer(),
                       config => [{atom() | iodata(), atom() | iodata() | integer()}]}.
-type admin_result() :: {ok, [{binary(), ok | {error, atom() | integer(), binary()}}]} | {error, term()}.
-export_type([new_topic/0, admin_result/0]).

%% ---------------------------------------------------------------------------------------
%% Application

%% @doc Starts erlkaf (restart type `temporary').
-spec start() -> ok | {error, term()}.
start() ->
    start(temporary).

%% @doc Starts erlkaf with a restart type.
-spec start(permanent | transient | temporary) -> ok | {error, term()}.
start(Type) ->
    case application:ensure_all_started(erlkaf, Type) of
        {ok, _} -> ok;
        Error -> Error
    end.

%% @doc Stops erlkaf and every client (each flushes up to its `stop_flush_timeout_ms').
-spec stop() -> ok | {error, term()}.
stop() ->
    application:stop(erlkaf).

%% ---------------------------------------------------------------------------------------
%% Clients

%% @doc Creates a producer client. `Config' holds librdkafka properties (as atoms like
%% `bootstrap_servers', or real names as binaries) and erlkaf options:
%% `delivery_report_callback' (module or fun/2,3), `delivery_report_only_error',
%% `delivery_report_priority' (`high', the default, `normal' or `low'), `stats_callback',
%% `queue_buffering_overflow_strategy' (`block_calling_process' or
%% `drop_records'), `queue_buffering_overflow_timeout_ms' (default 30000) and
%% `stop_flush_timeout_ms' (default 30000).
%%
%% Errors: `{error, {options, {Key, Value}}}' (unknown key or wrong value type),
%% `{error, {invalid_config, Key, Message}}' (librdkafka refused a value),
%% `{error, already_exists}', `{error, erlkaf_not_started}'.
-spec create_producer(client_id(), [client_option()]) -> ok | {error, term()}.
create_producer(ClientId, Config) ->
    case producer_spec(ClientId, Config) of
        {ok, Spec} -> start_client(ClientId, Spec, Config);
        Error -> Error
    end.

%% @doc Starts a producer linked to the caller, for your own supervision tree (the Elixir
%% `Erlkaf.Producer' child spec uses it). Same config and errors as `create_producer/2'.
-spec start_producer_link(client_id(), [client_option()]) -> {ok, pid()} | {error, term()}.
start_producer_link(ClientId, Config) ->
    case producer_spec(ClientId, Config) of
        {ok, #{start := {M, F, A}}} -> map_start_error(apply(M, F, A), Config);
        Error -> Error
    end.

producer_spec(ClientId, Config) when is_atom(ClientId); is_binary(ClientId) ->
    case erlkaf_config:client(Config) of
        {ok, Props, Opts} ->
            case check(client, Props, Config) of
                ok ->
                    Opts1 = Opts#{dropped => counters:new(1, [write_concurrency])},
                    {ok, erlkaf_producer_server:child_spec(ClientId, {Props, Opts1})};
                Error ->
                    Error
            end;
        Error ->
            Error
    end;
producer_spec(ClientId, _Config) ->
    {error, {invalid_client_id, ClientId}}.

map_start_error({error, {invalid_config, Name, Msg}}, Config) when is_binary(Name) ->
    {error, {invalid_config, erlkaf_config:user_key(Config, Name), Msg}};
map_start_error(Other, _Config) ->
    Other.

start_client(ClientId, Spec, Config) ->
    case erlkaf_registry:lookup(ClientId) of
        {ok, _, _, _, _} ->
            {error, already_exists};
        {error, undefined_client} ->
            try map_start_error(erlkaf_clients_sup:start_client(ClientId, Spec), Config)
            catch
                exit:{noproc, _} -> {error, erlkaf_not_started}
            end
    end.

check(Scope, Props, Config) ->
    case erlkaf_nif:config_check(Scope, Props) of
        ok -> ok;
        {error, {invalid_config, Name, Msg}} ->
            {error, {invalid_config, erlkaf_config:user_key(Config, Name), Msg}}
    end.

%% @equiv create_topic(ClientId, Topic, [])
-spec create_topic(client_id(), topic()) -> ok | {error, term()}.
create_topic(ClientId, Topic) ->
    create_topic(ClientId, Topic, []).

%% @doc Creates the producer's handle for `Topic' with its own librdkafka topic settings
%% (acks, partitioner, compression, message timeout...). It does not create the topic on
%% the broker. Call it before the first produce to that topic: `{error, already_exists}'
%% once a handle exists (also one made by an earlier produce with default settings).
-spec create_topic(client_id(), topic(), [topic_option()]) -> ok | {error, term()}.
create_topic(ClientId, Topic, Config) ->
    with_producer(ClientId, fun(Res, _Opts) ->
        case {topic_bin(Topic), erlkaf_config:topic(Config)} of
            {error, _} ->
                {error, {badarg, topic}};
            {_, {error, _} = Error} ->
                Error;
            {T, {ok, Props}} ->
                case erlkaf_nif:producer_create_topic(Res, T, Props) of
                    {error, {invalid_config, Name, Msg}} ->
                        {error, {invalid_config, erlkaf_config:user_key(Config, Name), Msg}};
                    Other ->
                        Other
                end
        end
    end).

%% @doc Stops a client. A producer first flushes for up to `stop_flush_timeout_ms', then
%% purges what is left: each purged message gets a delivery report with
%% `{error, purge_queue}' or `{error, purge_inflight}'. Returns when the client is gone.
-spec stop_client(client_id()) -> ok | {error, undefined_client}.
stop_client(ClientId) ->
    try erlkaf_clients_sup:stop_client(ClientId)
    catch exit:{noproc, _} -> {error, undefined_client}
    end.

%% @doc The client's latest librdkafka statistics (sent every `statistics_interval_ms';
%% `#{}' before the first or when statistics are off), read into maps with binary keys:
%% ```
%% ok = erlkaf:create_producer(p, [{bootstrap_servers, B}, {statistics_interval_ms, 1000}]),
%% {ok, #{<<"name">> := _, <<"msg_cnt">> := _, <<"brokers">> := #{}}} = erlkaf:get_stats(p).
%% '''
%% Also passed to the `stats_callback' as they arrive. Works on producers and consumers.
-spec get_stats(client_id()) -> {ok, map() | binary()} | {error, term()}.
get_stats(ClientId) ->
    case erlkaf_registry:lookup(ClientId) of
        {ok, _Type, _Res, Pid, _Opts} ->
            try gen_server:call(Pid, get_stats, 5000)
            catch exit:_ -> {error, undefined_client}
            end;
        Error ->
            Error
    end.

%% @doc `outq_len': messages and requests librdkafka holds for this producer;
%% `dropped': messages refused with `queue_full' under the `drop_records' strategy.
-spec producer_info(client_id()) -> {ok, #{outq_len := integer(), dropped := integer()}} | {error, term()}.
producer_info(ClientId) ->
    with_producer(ClientId, fun(Res, Opts) ->
        {ok, #{outq_len => erlkaf_nif:producer_outq_len(Res),
               dropped => counters:get(maps:get(dropped, Opts), 1)}}
    end).

%% ---------------------------------------------------------------------------------------
%% Consumer groups

%% @doc The seed's form: a consumer group addressed by its `GroupId', with one callback
%% module (the `erlkaf_consumer' behaviour) for every topic of `Topics' (binaries).
%% `TopicConfig' holds librdkafka topic settings such as `auto_offset_reset'.
-spec create_consumer_group(binary(), [topic()], [client_option()], [topic_option()], module(), term()) ->
    ok | {error, term()}.
create_consumer_group(GroupId, Topics, ClientConfig, TopicConfig, CbModule, CbArgs)
  when is_binary(GroupId), is_list(Topics) ->
    Entries = [{T, [{callback_module, CbModule}, {callback_args, CbArgs}]} || T <- Topics],
    create_consumer_group(GroupId, GroupId, Entries, ClientConfig, TopicConfig);
create_consumer_group(GroupId, Topics, _ClientConfig, _TopicConfig, _CbModule, _CbArgs) ->
    {error, {invalid_group, GroupId, Topics}}.

%% @doc The erlkaf 2.x form: `Topics' is `[{Topic, Settings}]' with `callback_module'
%% (required), `callback_args', `dispatch_mode' (`one_by_one' or `{batch, N}') and
%% `max_retries' (`infinity' or a count). One process per assigned partition runs the
%% handler; offsets are stored after it succeeded and committed every
%% `auto_commit_interval_ms', on revoke and on stop. Consumer options (in `ClientConfig'):
%% `max_inflight_batches' (unacknowledged batches per partition before it is paused,
%% default 4), `max_inflight_bytes' (unacknowledged bytes per partition before it is
%% paused, default 4 MiB), `revoke_timeout_ms' (default half of `max_poll_interval_ms') and
%% `worker_stop_timeout_ms' (default 30000).
-spec create_consumer_group(term(), binary(), [{topic(), list()}], [client_option()], [topic_option()]) ->
    ok | {error, term()}.
create_consumer_group(ClientId, GroupId, Topics, ClientConfig, TopicConfig) ->
    case group_spec(ClientId, GroupId, Topics, ClientConfig, TopicConfig) of
        {ok, Spec} -> start_client(ClientId, Spec, ClientConfig ++ TopicConfig);
        Error -> Error
    end.

%% @doc Starts a consumer group client linked to the caller, for your own supervision tree.
%% Same arguments and errors as `create_consumer_group/5'.
-spec start_consumer_group_link(term(), binary(), [{topic(), list()}], [client_option()], [topic_option()]) ->
    {ok, pid()} | {error, term()}.
start_consumer_group_link(ClientId, GroupId, Topics, ClientConfig, TopicConfig) ->
    case group_spec(ClientId, GroupId, Topics, ClientConfig, TopicConfig) of
        {ok, #{start := {M, F, A}}} -> map_start_error(apply(M, F, A), ClientConfig ++ TopicConfig);
        Error -> Error
    end.

group_spec(ClientId, GroupId, Topics, ClientConfig, TopicConfig) when is_binary(GroupId) ->
    case {consumer_topics(Topics, #{}), erlkaf_config:client(ClientConfig), erlkaf_config:topic(TopicConfig)} of
        {{error, _} = E, _, _} -> E;
        {_, {error, _} = E, _} -> E;
        {_, _, {error, _} = E} -> E;
        {{ok, Settings}, {ok, Props0, Opts}, {ok, TopicProps}} ->
            Props = Props0 ++ TopicProps ++ [{<<"group.id">>, GroupId}],
            case check(client, Props, ClientConfig ++ TopicConfig) of
                ok ->
                    Config = #{props => Props, topics => Settings,
                               max_inflight_batches => maps:get(max_inflight_batches, Opts),
                               max_inflight_bytes => maps:get(max_inflight_bytes, Opts),
                               revoke_timeout_ms => revoke_timeout(Opts, Props),
                               stop_timeout_ms => maps:get(worker_stop_timeout_ms, Opts),
                               callbacks => maps:with([error_callback, stats_callback,
                                                       oauthbearer_token_refresh_callback], Opts)},
                    {ok, erlkaf_group_server:child_spec(ClientId, Config)};
                Error ->
                    Error
            end
    end;
group_spec(_ClientId, GroupId, _Topics, _ClientConfig, _TopicConfig) ->
    {error, {invalid_group_id, GroupId}}.

consumer_topics([], Acc) when map_size(Acc) > 0 ->
    {ok, Acc};
consumer_topics([{T, Settings} = Entry | Rest], Acc) when is_list(Settings) ->
    Mod = proplists:get_value(callback_module, Settings),
    Dispatch = proplists:get_value(dispatch_mode, Settings, one_by_one),
    Retries = proplists:get_value(max_retries, Settings, infinity),
    Valid = is_atom(Mod) andalso Mod =/= undefined
        andalso (Dispatch =:= one_by_one orelse (is_tuple(Dispatch) andalso element(1, Dispatch) =:= batch
                                                 andalso is_integer(element(2, Dispatch))
                                                 andalso element(2, Dispatch) > 0))
        andalso (Retries =:= infinity orelse (is_integer(Retries) andalso Retries >= 0)),
    case {topic_bin(T), Valid} of
        {B, true} when is_binary(B) ->
            consumer_topics(Rest, Acc#{B => #{callback_module => Mod,
                                              callback_args => proplists:get_value(callback_args, Settings, []),
                                              dispatch_mode => Dispatch, max_retries => Retries}});
        _ ->
            {error, {invalid_topic, Entry}}
    end;
consumer_topics([Other | _], _Acc) ->
    {error, {invalid_topic, Other}};
consumer_topics(Other, _Acc) ->
    {error, {invalid_topic, Other}}.

revoke_timeout(#{revoke_timeout_ms := default}, Props) ->
    case lists:keyfind(<<"max.poll.interval.ms">>, 1, lists:reverse(Props)) of
        {_, V} -> binary_to_integer(V) div 2;
        false -> 150000
    end;
revoke_timeout(#{revoke_timeout_ms := Ms}, _Props) ->
    Ms.

%% @doc The partitions assigned to this member of the group.
-spec assignment(term()) -> {ok, [{topic(), partition()}]} | {error, term()}.
assignment(ClientId) ->
    with_consumer(ClientId, fun(Res) -> erlkaf_nif:consumer_assignment(Res) end).

%% @equiv commit_offsets(ClientId, 30000)
-spec commit_offsets(term()) -> ok | {error, term()}.
commit_offsets(ClientId) ->
    commit_offsets(ClientId, 30000).

%% @doc Commits the offsets stored so far (what handlers finished) and waits for the
%% broker's answer, up to `Timeout' ms. Never blocks a scheduler.
-spec commit_offsets(term(), non_neg_integer()) -> ok | {error, term()}.
commit_offsets(ClientId, Timeout) ->
    with_consumer(ClientId, fun(Res) ->
        Tag = make_ref(),
        ok = erlkaf_nif:consumer_commit(Res, Tag),
        receive {erlkaf_commit, Tag, Result} -> Result
        after Timeout -> {error, timeout}
        end
    end).

%% @doc Stops fetching an assigned partition until `resume/3' or the next rebalance (its
%% worker keeps what it has; batches already fetched still arrive). Returns at once: the
%% client's pump thread applies it. `{error, unknown_partition}' when not assigned here.
-spec pause(term(), topic(), partition()) -> ok | {error, term()}.
pause(ClientId, Topic, Partition) ->
    with_consumer(ClientId, fun(Res) -> erlkaf_nif:consumer_pause(Res, Topic, Partition, true) end).

%% @doc Fetches a paused partition again.
-spec resume(term(), topic(), partition()) -> ok | {error, term()}.
resume(ClientId, Topic, Partition) ->
    with_consumer(ClientId, fun(Res) -> erlkaf_nif:consumer_pause(Res, Topic, Partition, false) end).

%% @doc Moves the fetch position of an assigned partition: an offset, or `beginning' /
%% `end'. Batches already pushed from the old position are dropped by the partition's
%% worker; the next message it handles is the one at the new position.
-spec seek(term(), topic(), partition(), integer() | beginning | 'end') -> ok | {error, term()}.
seek(ClientId, Topic, Partition, Offset0) ->
    Offset = case Offset0 of beginning -> -2; 'end' -> -1; O -> O end,
    with_consumer(ClientId, fun(Res) ->
        Tag = make_ref(),
        ok = erlkaf_nif:consumer_seek(Res, Topic, Partition, Offset, Tag),
        receive {erlkaf_seek_done, Tag, Result} -> Result
        after 30000 -> {error, timeout}
        end
    end).

%% @equiv committed(ClientId, assigned)
-spec committed(term()) -> {ok, [{topic(), partition(), integer()}]} | {error, term()}.
committed(ClientId) ->
    committed(ClientId, assigned).

%% @doc The group's committed offsets (asked of the broker) for `[{Topic, Partition}]' or
%% for the `assigned' partitions; -1001 where nothing was committed.
-spec committed(term(), assigned | [{topic(), partition()}]) ->
    {ok, [{topic(), partition(), integer()}]} | {error, term()}.
committed(ClientId, Parts) ->
    with_consumer(ClientId, fun(Res) ->
        case parts(Res, Parts) of
            {ok, L} ->
                Tag = make_ref(),
                ok = erlkaf_nif:consumer_committed(Res, L, 30000, Tag),
                receive {erlkaf_committed, Tag, Result} -> Result end;
            Error ->
                Error
        end
    end).

%% @equiv position(ClientId, assigned)
-spec position(term()) -> {ok, [{topic(), partition(), integer()}]} | {error, term()}.
position(ClientId) ->
    position(ClientId, assigned).

%% @doc The fetch positions (offset of the next message librdkafka will hand out).
-spec position(term(), assigned | [{topic(), partition()}]) ->
    {ok, [{topic(), partition(), integer()}]} | {error, term()}.
position(ClientId, Parts) ->
    with_consumer(ClientId, fun(Res) ->
        case parts(Res, Parts) of
            {ok, L} -> erlkaf_nif:consumer_position(Res, L);
            Error -> Error
        end
    end).

parts(Res, assigned) -> erlkaf_nif:consumer_assignment(Res);
parts(_Res, L) when is_list(L) -> {ok, L}.

with_consumer(ClientId, Fun) ->
    case erlkaf_registry:lookup(ClientId) of
        {ok, consumer, Res, _Pid, _} -> Fun(Res);
        {ok, _, _, _, _} -> {error, not_a_consumer};
        Error -> Error
    end.

%% ---------------------------------------------------------------------------------------
%% Metadata and offsets. Each asks a broker: the call runs on a thread of its own (no
%% scheduler waits) and the caller waits for its answer, at most the timeout.

-define(QUERY_TIMEOUT, 10000).

%% @doc Brokers, topics, partitions, leaders, replicas and in-sync replicas, on a producer
%% or a consumer:
%% ```
%% {ok, #{brokers := [#{id := 1, host := <<"127.0.0.1">>, port := 9092}],
%%        topics := [#{name := <<"t">>, error := ok,
%%                     partitions := [#{id := 0, error := ok, leader := 1,
%%                                      replicas := [1], isrs := [1]}]}],
%%        orig_broker_id := 1, orig_broker_name := _}} = erlkaf:get_metadata(client1).
%% '''
-spec get_metadata(client_id()) -> {ok, map()} | {error, term()}.
get_metadata(ClientId) ->
    query(ClientId, {metadata, undefined}, ?QUERY_TIMEOUT).

%% @doc Metadata of one topic (same shape, one entry in `topics'). A topic the cluster
%% does not know has `error := unknown_topic_or_part' (or is auto-created by the broker).
-spec get_metadata(client_id(), topic()) -> {ok, map()} | {error, term()}.
get_metadata(ClientId, Topic) ->
    case topic_bin(Topic) of
        error -> {error, {badarg, topic}};
        T -> query(ClientId, {metadata, T}, ?QUERY_TIMEOUT)
    end.

%% @doc The number of partitions of `Topic'.
-spec get_partitions_count(client_id(), topic()) -> {ok, pos_integer()} | {error, term()}.
get_partitions_count(ClientId, Topic) ->
    case get_metadata(ClientId, Topic) of
        {ok, #{topics := [#{error := ok, partitions := Ps}]}} -> {ok, length(Ps)};
        {ok, #{topics := [#{error := Error}]}} -> {error, Error};
        {error, _} = Error -> Error
    end.

%% @equiv query_watermark_offsets(ClientId, Topic, Partition, 10000)
-spec query_watermark_offsets(client_id(), topic(), partition()) ->
    {ok, {integer(), integer()}} | {error, term()}.
query_watermark_offsets(ClientId, Topic, Partition) ->
    query_watermark_offsets(ClientId, Topic, Partition, ?QUERY_TIMEOUT).

%% @doc The low (first kept) and high (next to be written) offsets of a partition, asked
%% of its leader.
-spec query_watermark_offsets(client_id(), topic(), partition(), non_neg_integer()) ->
    {ok, {integer(), integer()}} | {error, term()}.
query_watermark_offsets(ClientId, Topic, Partition, Timeout)
  when is_integer(Partition), Partition >= 0, is_integer(Timeout), Timeout >= 0 ->
    case topic_bin(Topic) of
        error -> {error, {badarg, topic}};
        T -> query(ClientId, {watermarks, T, Partition}, Timeout)
    end;
query_watermark_offsets(_ClientId, _Topic, _Partition, _Timeout) ->
    {error, {badarg, partition_or_timeout}}.

%% @equiv offsets_for_times(ClientId, Partitions, 10000)
-spec offsets_for_times(client_id(), [{topic(), partition(), non_neg_integer()}]) ->
    {ok, [{binary(), partition(), integer() | {error, term()}}]} | {error, term()}.
offsets_for_times(ClientId, Partitions) ->
    offsets_for_times(ClientId, Partitions, ?QUERY_TIMEOUT).

%% @doc For each `{Topic, Partition, TimestampMs}': the earliest offset whose timestamp is
%% at or after it (-1 when there is none), or that partition's error.
-spec offsets_for_times(client_id(), [{topic(), partition(), non_neg_integer()}], non_neg_integer()) ->
    {ok, [{binary(), partition(), integer() | {error, term()}}]} | {error, term()}.
offsets_for_times(ClientId, Partitions, Timeout) when is_list(Partitions), is_integer(Timeout), Timeout >= 0 ->
    case partition_offsets(Partitions, 0) of
        {ok, L} -> query(ClientId, {offsets_for_times, L}, Timeout);
        error -> {error, {badarg, partitions}}
    end;
offsets_for_times(_ClientId, _Partitions, _Timeout) ->
    {error, {badarg, partitions}}.

%% @doc A consumer group's lag on its assigned partitions: the high watermark minus the
%% committed offset (minus the low watermark when nothing was committed).
-spec consumer_lag(client_id()) -> {ok, [{binary(), partition(), non_neg_integer()}]} | {error, term()}.
consumer_lag(ClientId) ->
    case committed(ClientId) of
        {ok, Committed} -> lag(ClientId, Committed, []);
        Error -> Error
    end.

lag(_ClientId, [], Acc) ->
    {ok, lists:reverse(Acc)};
lag(ClientId, [{T, P, Committed} | Rest], Acc) ->
    case query_watermark_offsets(ClientId, T, P) of
        {ok, {Low, High}} ->
            From = case Committed >= 0 of true -> Committed; false -> Low end,
            lag(ClientId, Rest, [{T, P, max(0, High - From)} | Acc]);
        Error ->
            Error
    end.

query(ClientId, Query, Timeout) ->
    case erlkaf_registry:lookup(ClientId) of
        {ok, _Type, Res, _Pid, _Opts} -> await(fun(Tag) -> erlkaf_nif:client_query(Res, Query, Timeout, Tag) end);
        Error -> Error
    end.

%% Starts a NIF call that answers later on a thread of its own (`Start(Tag)'), and waits
%% for its `{erlkaf_query, Tag, Result}' (the call itself is bounded by its timeout).
await(Start) ->
    Tag = make_ref(),
    case Start(Tag) of
        ok -> receive {erlkaf_query, Tag, Result} -> Result end;
        {error, _} = Error -> Error
    end.

%% `[{Topic, Partition, Offset}]' with topics as binaries, partitions >= 0 and offsets
%% >= Min; `error' when any element is otherwise.
partition_offsets(List, Min) ->
    L = [{topic_bin(T), P, O} || {T, P, O} <- List, is_integer(P), P >= 0, is_integer(O), O >= Min],
    case length(L) =:= length(List) andalso not lists:keymember(error, 1, L) of
        true -> {ok, L};
        false -> error
    end.

%% ---------------------------------------------------------------------------------------
%% Admin: topics and partitions. Each request waits for the controller's answer (at most
%% the timeout, default 30 s) on a thread of its own; results are per topic.

-define(ADMIN_TIMEOUT, 30000).


%% @equiv create_topics(ClientId, Topics, 30000)
-spec create_topics(client_id(), [new_topic()]) -> admin_result().
create_topics(ClientId, Topics) ->
    create_topics(ClientId, Topics, ?ADMIN_TIMEOUT).

%% @doc Creates topics (-1 partitions or replication factor: the broker's default);
%% config keys are the broker's topic settings (`retention_ms' or `<<"retention.ms">>'):
%% ```
%% {ok, [{<<"events">>, ok}, {<<"bad name!">>, {error, invalid_topic_exception, _}}]} =
%%     erlkaf:create_topics(client1, [{<<"events">>, 8, 3, [{retention_ms, 3600000}]},
%%                                    #{name => <<"bad name!">>, partitions => 1}]).
%% '''
-spec create_topics(client_id(), [new_topic()], non_neg_integer()) -> admin_result().
create_topics(ClientId, Topics, Timeout) when is_list(Topics), is_integer(Timeout), Timeout >= 0 ->
    try [new_topic(T) || T <- Topics] of
        L -> query(ClientId, {create_topics, L}, Timeout)
    catch
        throw:{badarg, _} = Bad -> {error, Bad}
    end;
create_topics(_ClientId, _Topics, _Timeout) ->
    {error, {badarg, topics}}.

new_topic({T, P, R}) -> new_topic({T, P, R, []});
new_topic(#{name := T} = M) ->
    new_topic({T, maps:get(partitions, M, -1), maps:get(replication_factor, M, -1), maps:get(config, M, [])});
new_topic({T, P, R, Config}) when is_integer(P), is_integer(R), is_list(Config) ->
    case topic_bin(T) of
        error -> throw({badarg, topic});
        B -> {B, P, R, [{config_name(K), config_value(V)} || {K, V} <- Config]}
    end;
new_topic(_) -> throw({badarg, topic}).

config_name(K) when is_atom(K) -> list_to_binary(string:replace(atom_to_list(K), "_", ".", all));
config_name(K) -> iolist_to_binary(K).

config_value(V) when is_integer(V) -> integer_to_binary(V);
config_value(V) when is_atom(V) -> atom_to_binary(V);
config_value(V) -> iolist_to_binary(V).

%% @equiv delete_topics(ClientId, Topics, 30000)
-spec delete_topics(client_id(), [topic()]) -> admin_result().
delete_topics(ClientId, Topics) ->
    delete_topics(ClientId, Topics, ?ADMIN_TIMEOUT).

%% @doc Deletes topics.
-spec delete_topics(client_id(), [topic()], non_neg_integer()) -> admin_result().
delete_topics(ClientId, Topics, Timeout) when is_list(Topics), is_integer(Timeout), Timeout >= 0 ->
    Names = [topic_bin(T) || T <- Topics],
    case lists:member(error, Names) of
        true -> {error, {badarg, topic}};
        false -> query(ClientId, {delete_topics, Names}, Timeout)
    end;
delete_topics(_ClientId, _Topics, _Timeout) ->
    {error, {badarg, topics}}.

%% @equiv create_partitions(ClientId, Totals, 30000)
-spec create_partitions(client_id(), [{topic(), pos_integer()}]) -> admin_result().
create_partitions(ClientId, Totals) ->
    create_partitions(ClientId, Totals, ?ADMIN_TIMEOUT).

%% @doc Raises topics' partition counts to the given totals.
-spec create_partitions(client_id(), [{topic(), pos_integer()}], non_neg_integer()) -> admin_result().
create_partitions(ClientId, Totals, Timeout) when is_list(Totals), is_integer(Timeout), Timeout >= 0 ->
    L = [{topic_bin(T), N} || {T, N} <- Totals, is_integer(N), N > 0],
    case length(L) =:= length(Totals) andalso not lists:keymember(error, 1, L) of
        true -> query(ClientId, {create_partitions, L}, Timeout);
        false -> {error, {badarg, partitions}}
    end;
create_partitions(_ClientId, _Totals, _Timeout) ->
    {error, {badarg, partitions}}.

%% @equiv list_groups(ClientId, 30000)
-spec list_groups(client_id()) -> {ok, [#{group_id := binary(), simple := boolean(), state := binary()}]} | {error, term()}.
list_groups(ClientId) ->
    list_groups(ClientId, ?ADMIN_TIMEOUT).

%% @doc The consumer groups the cluster knows, with their state (`<<"Stable">>'...).
-spec list_groups(client_id(), non_neg_integer()) ->
    {ok, [#{group_id := binary(), simple := boolean(), state := binary()}]} | {error, term()}.
list_groups(ClientId, Timeout) ->
    query(ClientId, list_groups, Timeout).

%% @equiv describe_groups(ClientId, GroupIds, 30000)
-spec describe_groups(client_id(), [binary()]) -> {ok, [map()]} | {error, term()}.
describe_groups(ClientId, GroupIds) ->
    describe_groups(ClientId, GroupIds, ?ADMIN_TIMEOUT).

%% @doc State, assignor, coordinator and members (client id, host, assigned partitions)
%% of consumer groups: `#{group_id, error, simple, assignor, state, coordinator,
%% members => [#{client_id, consumer_id, group_instance_id, host, assignment}]}'.
-spec describe_groups(client_id(), [binary()], non_neg_integer()) -> {ok, [map()]} | {error, term()}.
describe_groups(ClientId, GroupIds, Timeout) when is_list(GroupIds) ->
    case [G || G <- GroupIds, not is_binary(G)] of
        [] -> query(ClientId, {describe_groups, GroupIds}, Timeout);
        _ -> {error, {badarg, groups}}
    end;
describe_groups(_ClientId, _GroupIds, _Timeout) ->
    {error, {badarg, groups}}.

%% @equiv describe_configs(ClientId, Resources, 30000)
-spec describe_configs(client_id(), [{topic, topic()} | {broker, non_neg_integer()}]) -> {ok, list()} | {error, term()}.
describe_configs(ClientId, Resources) ->
    describe_configs(ClientId, Resources, ?ADMIN_TIMEOUT).

%% @doc Configuration entries of topics and brokers:
%% `{ok, [{topic | broker, Name, {ok, [#{name, value, source, read_only, default,
%% sensitive}]} | {error, Code, Message}}]}' (a sensitive value is `undefined').
-spec describe_configs(client_id(), [{topic, topic()} | {broker, non_neg_integer()}], non_neg_integer()) ->
    {ok, list()} | {error, term()}.
describe_configs(ClientId, Resources, Timeout) when is_list(Resources) ->
    L = [case R of
             {topic, T} -> {topic, topic_bin(T)};
             {broker, Id} when is_integer(Id), Id >= 0 -> {broker, integer_to_binary(Id)};
             _ -> {bad, error}
         end || R <- Resources],
    case lists:keymember(error, 2, L) of
        true -> {error, {badarg, resources}};
        false -> query(ClientId, {describe_configs, L}, Timeout)
    end;
describe_configs(_ClientId, _Resources, _Timeout) ->
    {error, {badarg, resources}}.

%% @equiv delete_records(ClientId, Before, 30000)
-spec delete_records(client_id(), [{topic(), partition(), integer()}]) ->
    {ok, [{binary(), partition(), integer() | {error, term()}}]} | {error, term()}.
delete_records(ClientId, Before) ->
    delete_records(ClientId, Before, ?ADMIN_TIMEOUT).

%% @doc Deletes the records before an offset in each partition (-1: all up to the high
%% watermark); answers each partition's new low watermark, or its error.
-spec delete_records(client_id(), [{topic(), partition(), integer()}], non_neg_integer()) ->
    {ok, [{binary(), partition(), integer() | {error, term()}}]} | {error, term()}.
delete_records(ClientId, Before, Timeout) when is_list(Before) ->
    case partition_offsets(Before, -1) of
        {ok, L} -> query(ClientId, {delete_records, L}, Timeout);
        error -> {error, {badarg, partitions}}
    end;
delete_records(_ClientId, _Before, _Timeout) ->
    {error, {badarg, partitions}}.

%% ---------------------------------------------------------------------------------------
%% Transactions: a producer created with `{transactional_id, Id}'. Errors are
%% `{error, {Code, #{message, fatal, retriable, abortable}}}': `abortable' says the
%% transaction must be aborted, `retriable' that the call may be repeated, `fatal' that
%% the producer is unusable (it then stops, see `error_callback').
%%
%% Consume-transform-produce, from a handler:
%% ```
%% ok = erlkaf:begin_transaction(txp),
%% {ok, _} = erlkaf:produce_batch(txp, <<"out">>, Transformed),
%% ok = erlkaf:send_offsets_to_transaction(txp, my_group, [{<<"in">>, P, LastOffset + 1}]),
%% ok = erlkaf:commit_transaction(txp).
%% '''

-define(TXN_TIMEOUT, 30000).

%% @equiv init_transactions(ClientId, 30000)
-spec init_transactions(client_id()) -> ok | {error, term()}.
init_transactions(ClientId) ->
    init_transactions(ClientId, ?TXN_TIMEOUT).

%% @doc Registers the transactional id with the cluster (fencing older producers that
%% used it) and finishes what a previous instance left. Once per producer.
-spec init_transactions(client_id(), non_neg_integer()) -> ok | {error, term()}.
init_transactions(ClientId, Timeout) ->
    txn(ClientId, init, Timeout).

%% @doc Starts a transaction: what is produced until commit or abort belongs to it.
-spec begin_transaction(client_id()) -> ok | {error, term()}.
begin_transaction(ClientId) ->
    txn(ClientId, 'begin', ?TXN_TIMEOUT).

%% @equiv commit_transaction(ClientId, 30000)
-spec commit_transaction(client_id()) -> ok | {error, term()}.
commit_transaction(ClientId) ->
    commit_transaction(ClientId, ?TXN_TIMEOUT).

%% @doc Flushes the transaction's messages and commits it.
-spec commit_transaction(client_id(), non_neg_integer()) -> ok | {error, term()}.
commit_transaction(ClientId, Timeout) ->
    txn(ClientId, commit, Timeout).

%% @equiv abort_transaction(ClientId, 30000)
-spec abort_transaction(client_id()) -> ok | {error, term()}.
abort_transaction(ClientId) ->
    abort_transaction(ClientId, ?TXN_TIMEOUT).

%% @doc Aborts the transaction: its messages are purged or marked aborted (consumers
%% with `{isolation_level, read_committed}' never see them).
-spec abort_transaction(client_id(), non_neg_integer()) -> ok | {error, term()}.
abort_transaction(ClientId, Timeout) ->
    txn(ClientId, abort, Timeout).

%% @equiv send_offsets_to_transaction(ClientId, GroupClientId, Offsets, 30000)
-spec send_offsets_to_transaction(client_id(), client_id(), [{topic(), partition(), non_neg_integer()}]) ->
    ok | {error, term()}.
send_offsets_to_transaction(ClientId, GroupClientId, Offsets) ->
    send_offsets_to_transaction(ClientId, GroupClientId, Offsets, ?TXN_TIMEOUT).

%% @doc Commits a consumer group's offsets (the next offset to read per partition) as
%% part of the current transaction. `GroupClientId' is an erlkaf consumer group client.
-spec send_offsets_to_transaction(client_id(), client_id(), [{topic(), partition(), non_neg_integer()}],
                                  non_neg_integer()) -> ok | {error, term()}.
send_offsets_to_transaction(ClientId, GroupClientId, Offsets, Timeout) when is_list(Offsets) ->
    case partition_offsets(Offsets, 0) of
        error ->
            {error, {badarg, offsets}};
        {ok, L} ->
            with_producer(ClientId, fun(Res, _Opts) ->
                case erlkaf_registry:lookup(GroupClientId) of
                    {ok, consumer, CRes, _, _} ->
                        await(fun(Tag) -> erlkaf_nif:producer_send_offsets(Res, CRes, L, Timeout, Tag) end);
                    {ok, _, _, _, _} ->
                        {error, not_a_consumer};
                    Error ->
                        Error
                end
            end)
    end;
send_offsets_to_transaction(_ClientId, _GroupClientId, _Offsets, _Timeout) ->
    {error, {badarg, offsets}}.

txn(ClientId, Op, Timeout) when is_integer(Timeout), Timeout >= 0 ->
    with_producer(ClientId, fun(Res, _Opts) -> await(fun(Tag) -> erlkaf_nif:producer_txn(Res, Op, Timeout, Tag) end) end);
txn(_ClientId, _Op, _Timeout) ->
    {error, {badarg, timeout}}.

%% ---------------------------------------------------------------------------------------
%% Producer API

%% @doc Produces one message; the partitioner picks the partition. `undefined' is a null
%% key or value (a null value is a tombstone). Returns `{ok, MsgRef}' once librdkafka has
%% queued it; the delivery report carries the same `MsgRef'.
-spec produce(client_id(), topic(), key(), value()) -> {ok, msg_ref()} | {error, produce_error()}.
produce(ClientId, Topic, Key, Value) ->
    produce(ClientId, Topic, ?DEFAULT_PARTITIONER, Key, Value, undefined, 0).

%% @doc Produces one message with headers (`[{Name, Value}]' or a map).
-spec produce(client_id(), topic(), key(), value(), headers()) -> {ok, msg_ref()} | {error, produce_error()}.
produce(ClientId, Topic, Key, Value, Headers) ->
    produce(ClientId, Topic, ?DEFAULT_PARTITIONER, Key, Value, Headers, 0).

%% @doc Produces one message to a partition (-1: the partitioner chooses), with headers.
-spec produce(client_id(), topic(), partition(), key(), value(), headers()) ->
    {ok, msg_ref()} | {error, produce_error()}.
produce(ClientId, Topic, Partition, Key, Value, Headers) ->
    produce(ClientId, Topic, Partition, Key, Value, Headers, 0).

%% @doc Produces one message with a timestamp (ms since the epoch; 0: now).
-spec produce(client_id(), topic(), partition(), key(), value(), headers(), timestamp()) ->
    {ok, msg_ref()} | {error, produce_error()}.
produce(ClientId, Topic, Partition, Key, Value, Headers, Timestamp) ->
    case erlkaf_registry:lookup(ClientId) of
        %% The common case in one NIF call, without closures; anything else (an error, a
        %% full queue) takes the general path, which reports it.
        {ok, producer, Res, _Pid, #{spilling := undefined} = Opts} when is_binary(Topic), byte_size(Topic) > 0 ->
            case erlkaf_nif:producer_send(Res, Topic, Partition, Key, Value, Headers, Timestamp) of
                {ok, _} = Ok -> Ok;
                retry -> produce_one(Res, Topic, {Partition, Key, Value, Headers, Timestamp}, Opts)
            end;
        _ ->
            Msg = {Partition, Key, Value, Headers, Timestamp},
            with_producer_topic(ClientId, Topic, fun(Res, T, Opts) -> produce_one(Res, T, Msg, Opts) end)
    end.

produce_one(Res, Topic, Msg, Opts) ->
    case enqueue(Res, Topic, [Msg], owner, Opts) of
        {ok, [Ref]} -> {ok, Ref};
        {error, {Reason, [], _}} -> {error, Reason}
    end.

%% @doc Produces a batch to one topic in as few NIF calls as possible.
%%
%% Each element is a value (binary or iolist, null key), a `{Key, Value}' tuple, or a map
%% with any of `key', `value', `headers', `partition', `timestamp'. A value that is one
%% binary is passed to librdkafka without copying; an iolist is flattened once.
%%
%% Returns `{ok, MsgRefs}' (one per message, in order) when every message was accepted.
%% Otherwise `{error, {Reason, AcceptedRefs, NotAccepted}}': the first
%% `length(AcceptedRefs)' messages were accepted and each will get a delivery report;
%% `NotAccepted' is the rest of the input, starting with the message that was refused
%% with `Reason', and none of it was produced. With the `block_calling_process' overflow
%% strategy (the default) a full queue is waited out for up to
%% `queue_buffering_overflow_timeout_ms' without progress before `queue_full' is returned.
%%
%% Messages without a key or partition go to the topic's sticky partition, as librdkafka
%% places them (one partition at a time, changed every `sticky_partitioning_linger_ms',
%% by default twice `linger_ms'); erlkaf decides it once for a run of them rather than for
%% each, so a batch's keyless messages share one partition. Spread a batch yourself
%% (`partition' in each message) to write to several at once.
-spec produce_batch(client_id(), topic(), [batch_message()]) ->
    {ok, [msg_ref()]} | {error, {produce_error(), [msg_ref()], [batch_message()]}} | {error, produce_error()}.
produce_batch(ClientId, Topic, Messages) ->
    produce_batch(ClientId, Topic, Messages, #{}).

%% @doc `produce_batch/3' with options. `refs => false': no MsgRef is made; returns
%% `{ok, Count}' or `{error, {Reason, AcceptedCount, NotAccepted}}', and delivery reports
%% carry `undefined' for the MsgRef (a message that went through the disk spill of
%% `local_disk_queue' carries the one the spill gave it). For producers that do not match
%% reports to messages (no callback, or one that counts): without a MsgRef made,
%% returned and collected per message, one process produces a few percent more small
%% messages per second.
%%
%% ```
%% {ok, 3} = erlkaf:produce_batch(p, <<"events">>, [<<"a">>, <<"b">>, <<"c">>], #{refs => false}).
%% '''
-spec produce_batch(client_id(), topic(), [batch_message()], #{refs => boolean()} | [{refs, boolean()}]) ->
    {ok, [msg_ref()] | non_neg_integer()}
    | {error, {produce_error(), [msg_ref()] | non_neg_integer(), [batch_message()]}}
    | {error, produce_error() | {badarg, options}}.
produce_batch(ClientId, Topic, Messages, Options) when is_list(Options) ->
    try maps:from_list(Options) of
        Map -> produce_batch(ClientId, Topic, Messages, Map)
    catch error:badarg -> {error, {badarg, options}}
    end;
produce_batch(ClientId, Topic, Messages, Options) when is_list(Messages), is_map(Options) ->
    case maps:to_list(Options) of
        [] -> produce_batch1(ClientId, Topic, Messages, true);
        [{refs, WantRefs}] when is_boolean(WantRefs) -> produce_batch1(ClientId, Topic, Messages, WantRefs);
        _ -> {error, {badarg, options}}
    end;
produce_batch(_ClientId, _Topic, Messages, _Options) when is_list(Messages) ->
    {error, {badarg, options}};
produce_batch(_ClientId, _Topic, _Messages, _Options) ->
    {error, {badarg, message}}.

produce_batch1(ClientId, Topic, Messages, WantRefs) ->
    with_producer_topic(ClientId, Topic, fun(Res, T, Opts) ->
        case erlkaf_telemetry:enabled() of
            false ->
                enqueue(Res, T, Messages, owner, Opts, WantRefs);
            true ->
                T0 = erlang:monotonic_time(),
                R = enqueue(Res, T, Messages, owner, Opts, WantRefs),
                {Count, Bytes} = count_bytes(Messages, 0, 0),
                erlkaf_telemetry:execute([erlkaf, produce_batch],
                                         #{count => Count, bytes => Bytes, duration => erlang:monotonic_time() - T0},
                                         #{client_id => ClientId, topic => T, result => case R of {ok, _} -> ok; {error, {E, _, _}} -> E end}),
                R
        end
    end).

%% Messages and value bytes of a batch (which may be an improper list: the NIF said so).
count_bytes([M | Rest], N, B) -> count_bytes(Rest, N + 1, B + value_size(M));
count_bytes(_, N, B) -> {N, B}.

value_size(V) when is_binary(V) -> byte_size(V);
value_size({_K, V}) when is_binary(V) -> byte_size(V);
value_size(#{value := V}) when is_binary(V) -> byte_size(V);
value_size(_) -> 0.

%% @equiv produce_sync(ClientId, Topic, Key, Value, #{})
-spec produce_sync(client_id(), topic(), key(), value()) ->
    {ok, partition(), integer()} | {error, term()}.
produce_sync(ClientId, Topic, Key, Value) ->
    produce_sync(ClientId, Topic, Key, Value, #{}).

%% @doc Produces one message and waits for its delivery report. `Opts' (map or list):
%% `timeout' (ms, default 30000), `partition', `headers', `timestamp'. Returns the
%% partition and offset, `{error, Reason}' from the report, or `{error, timeout}' (the
%% message may still be delivered later; no late reply reaches the caller).
-spec produce_sync(client_id(), topic(), key(), value(), map() | list()) ->
    {ok, partition(), integer()} | {error, term()}.
produce_sync(ClientId, Topic, Key, Value, Opts) when is_list(Opts) ->
    try maps:from_list(Opts) of
        Map -> produce_sync(ClientId, Topic, Key, Value, Map)
    catch error:badarg -> {error, {badarg, options}}
    end;
produce_sync(_ClientId, _Topic, _Key, _Value, #{timeout := T})
  when not (is_integer(T) andalso T >= 0), T =/= infinity ->
    {error, {badarg, timeout}};
produce_sync(_ClientId, _Topic, _Key, _Value, Opts) when not is_map(Opts) ->
    {error, {badarg, options}};
produce_sync(ClientId, Topic, Key, Value, Opts) ->
    Timeout = maps:get(timeout, Opts, 30000),
    Msg = {maps:get(partition, Opts, ?DEFAULT_PARTITIONER), Key, Value,
           maps:get(headers, Opts, undefined), maps:get(timestamp, Opts, 0)},
    with_producer_topic(ClientId, Topic, fun(Res, T, ClientOpts) ->
        Alias = alias([reply]),
        case enqueue(Res, T, [Msg], Alias, ClientOpts) of
            {ok, [_Ref]} ->
                receive
                    {erlkaf_sync, Alias, Result} -> Result
                after Timeout ->
                    unalias(Alias),
                    receive {erlkaf_sync, Alias, Result} -> Result
                    after 0 -> {error, timeout}
                    end
                end;
            {error, {Reason, [], _}} ->
                unalias(Alias),
                {error, Reason}
        end
    end).

%% @doc Waits until every message produced so far was delivered (or failed) and its
%% delivery report was handed to the callback, up to `Timeout' ms. Never blocks a
%% scheduler: librdkafka's flush runs on a thread of its own.
-spec flush(client_id(), non_neg_integer()) -> ok | {error, timeout | term()}.
flush(ClientId, Timeout) when is_integer(Timeout), Timeout >= 0 ->
    case erlkaf_registry:lookup(ClientId) of
        {ok, producer, Res, Pid, _} ->
            Tag = make_ref(),
            ok = erlkaf_nif:producer_flush(Res, Timeout, Tag),
            receive
                {erlkaf_flush, Tag, ok} -> erlkaf_producer_server:sync(Pid);
                {erlkaf_flush, Tag, {error, timed_out}} -> {error, timeout};
                {erlkaf_flush, Tag, Error} -> Error
            end;
        {ok, _, _, _, _} ->
            {error, not_a_producer};
        Error ->
            Error
    end.

%% ---------------------------------------------------------------------------------------
%% Internal

with_producer(ClientId, Fun) ->
    case erlkaf_registry:lookup(ClientId) of
        {ok, producer, Res, _Pid, Opts} -> Fun(Res, Opts);
        {ok, _, _, _, _} -> {error, not_a_producer};
        Error -> Error
    end.

with_producer_topic(ClientId, Topic, Fun) ->
    with_producer(ClientId, fun(Res, Opts) ->
        case topic_bin(Topic) of
            error -> {error, {badarg, topic}};
            T -> Fun(Res, T, Opts)
        end
    end).

topic_bin(T) when is_binary(T), byte_size(T) > 0 -> T;
topic_bin(T) when is_list(T) ->
    case catch iolist_to_binary(T) of
        B when is_binary(B), byte_size(B) > 0 -> B;
        _ -> error
    end;
topic_bin(_) -> error.

%% Calls the produce NIF until the list is consumed (each call stays well under 1 ms),
%% applying the overflow strategy when librdkafka's queue is full.
%% `WantRefs' false: the NIF makes no MsgRef and answers counts (Acc then holds counts,
%% not lists of refs).
enqueue(Res, Topic, Messages, Reply, Opts) ->
    enqueue(Res, Topic, Messages, Reply, Opts, true).

enqueue(Res, Topic, Messages, owner, #{spilling := Spilling} = Opts, WantRefs) when Spilling =/= undefined ->
    %% local_disk_queue: while the spill is not empty, everything goes behind it.
    case atomics:get(Spilling, 1) of
        0 -> enqueue(Res, Topic, Messages, owner, Opts, WantRefs, [], undefined, 1);
        _ -> spill(Topic, Messages, [], Opts, WantRefs)
    end;
enqueue(Res, Topic, Messages, Reply, Opts, WantRefs) ->
    enqueue(Res, Topic, Messages, Reply, Opts, WantRefs, [], undefined, 1).

%% Hands messages to the producer process, which appends them to its disk spill (with a
%% MsgRef each: a replayed message is reported under it).
spill(Topic, Messages, Acc, #{server := Server}, WantRefs) ->
    case gen_server:call(Server, {spill, Topic, Messages}, infinity) of
        {ok, Refs} -> {ok, accepted([refs_or_count(Refs, WantRefs) | Acc], WantRefs)};
        {error, {Reason, Refs, Rest}} -> partial(Reason, [refs_or_count(Refs, WantRefs) | Acc], Rest, WantRefs)
    end.

refs_or_count(Refs, true) -> Refs;
refs_or_count(Refs, false) -> length(Refs).

%% What the NIF calls accepted, in order: their refs, or how many.
accepted(Acc, true) -> lists:append(lists:reverse(Acc));
accepted(Acc, false) -> lists:sum(Acc).

enqueue(Res, Topic, Messages, Reply, Opts, WantRefs, Acc, Deadline, Backoff) ->
    case erlkaf_nif:producer_produce(Res, Topic, Messages, Reply, WantRefs) of
        {ok, Refs} ->
            {ok, accepted([Refs | Acc], WantRefs)};
        {more, Refs, Rest} ->
            enqueue(Res, Topic, Rest, Reply, Opts, WantRefs, [Refs | Acc], undefined, 1);
        {error, queue_full, Refs, Rest} ->
            Acc1 = [Refs | Acc],
            Progress = Refs =/= [] andalso Refs =/= 0,
            case maps:get(queue_buffering_overflow_strategy, Opts) of
                block_calling_process ->
                    %% The timeout counts from the last progress.
                    Deadline1 = case Progress orelse Deadline =:= undefined of
                        true -> overflow_deadline(Opts);
                        false -> Deadline
                    end,
                    case wait_for_room(Deadline1, Backoff) of
                        ok ->
                            Backoff1 = case Progress of true -> 1; false -> min(Backoff * 2, 32) end,
                            enqueue(Res, Topic, Rest, Reply, Opts, WantRefs, Acc1, Deadline1, Backoff1);
                        timeout ->
                            partial(queue_full, Acc1, Rest, WantRefs)
                    end;
                drop_records ->
                    counters:add(maps:get(dropped, Opts), 1, length(Rest)),
                    partial(queue_full, Acc1, Rest, WantRefs);
                local_disk_queue when Reply =:= owner ->
                    spill(Topic, Rest, Acc1, Opts, WantRefs);
                local_disk_queue ->
                    %% produce_sync waits for its report: no spill for it.
                    partial(queue_full, Acc1, Rest, WantRefs)
            end;
        {error, Reason, Refs, Rest} ->
            partial(Reason, [Refs | Acc], Rest, WantRefs)
    end.

partial(Reason, Acc, Rest, WantRefs) ->
    {error, {Reason, accepted(Acc, WantRefs), Rest}}.

overflow_deadline(Opts) ->
    case maps:get(queue_buffering_overflow_timeout_ms, Opts) of
        infinity -> infinity;
        Ms -> erlang:monotonic_time(millisecond) + Ms
    end.

wait_for_room(infinity, Backoff) ->
    timer:sleep(Backoff);
wait_for_room(Deadline, Backoff) ->
    Left = Deadline - erlang:monotonic_time(millisecond),
    case Left =< 0 of
        true -> timeout;
        false -> timer:sleep(min(Backoff, Left))
    end.
