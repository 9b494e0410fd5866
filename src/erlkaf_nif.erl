%%% @doc The NIF loader and stubs. Nothing else lives here: every function is replaced by
%%% native code from `priv/liberlkaf_nif.so' (crate `native/erlkaf_nif'). NIF names are
%%% `<domain>_<verb>' on both sides.
-module(erlkaf_nif).

-define(NIFS, [
    producer_new/4,
    producer_create_topic/3,
    producer_produce/5,
    producer_send/7,
    producer_flush/3,
    producer_stop/2,
    producer_outq_len/1,
    producer_take_reports/2,
    producer_take_heavy_report/2,
    producer_msg_refs/1,
    mock_new/1,
    mock_stop/1,
    mock_create_topic/4,
    mock_broker_down/2,
    mock_broker_up/2,
    mock_set_rtt/3,
    mock_push_request_errors/3,
    mock_clear_request_errors/2,
    mock_set_partition_leader/4,
    mock_set_group_initial_rebalance_delay/2,
    consumer_new/6,
    consumer_register/4,
    consumer_ack/4,
    consumer_revoke_done/2,
    consumer_pause/4,
    consumer_assignment/1,
    consumer_commit/2,
    consumer_stop/1,
    consumer_seek/5,
    consumer_committed/4,
    consumer_position/2,
    client_query/4,
    producer_txn/4,
    client_oauth_token/2,
    producer_send_offsets/5,
    config_check/2,
    nif_counters/0,
    nif_call_times_reset/0
]).

-export(?NIFS).
-export([so_path/0]).
-nifs(?NIFS).

-on_load(load/0).

-define(NOT_LOADED, erlang:nif_error({not_loaded, so_path()})).

%% @doc The path (without `.so') the loader uses: the application's priv dir, or the priv
%% dir next to this module's ebin when the application is not known to the code server.
-spec so_path() -> file:filename().
so_path() ->
    Priv = case code:priv_dir(erlkaf) of
        {error, bad_name} ->
            filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
        Dir ->
            Dir
    end,
    filename:join(Priv, "liberlkaf_nif").

%% The native heap (librdkafka's included) is mimalloc unless the `erlkaf' application's
%% `allocator' setting (or the ERLKAF_ALLOCATOR environment variable) is `system' (glibc's
%% malloc). See the README, "Performance".
load() ->
    Path = so_path(),
    case erlang:load_nif(Path, #{allocator => allocator()}) of
        ok ->
            ok;
        {error, {Reason, Text}} ->
            Msg = "erlkaf: cannot load the NIF from ~ts.so: ~p ~ts~n"
                  "(build it with `rebar3 compile` or `mix compile`; cargo is required)~n",
            error_logger:error_msg(Msg, [Path, Reason, Text]),
            {error, {load_failed, Path ++ ".so", Reason}}
    end.

allocator() ->
    case application:get_env(erlkaf, allocator) of
        {ok, system} -> system;
        {ok, mimalloc} -> mimalloc;
        _ ->
            case os:getenv("ERLKAF_ALLOCATOR") of
                "system" -> system;
                _ -> mimalloc
            end
    end.

producer_new(_Name, _Props, _Owner, _Mode) -> ?NOT_LOADED.
producer_create_topic(_Res, _Topic, _Props) -> ?NOT_LOADED.
producer_produce(_Res, _Topic, _Messages, _Reply, _WantRefs) -> ?NOT_LOADED.
producer_flush(_Res, _TimeoutMs, _Tag) -> ?NOT_LOADED.
producer_stop(_Res, _TimeoutMs) -> ?NOT_LOADED.
producer_outq_len(_Res) -> ?NOT_LOADED.
producer_take_reports(_Res, _Id) -> ?NOT_LOADED.
producer_take_heavy_report(_Res, _Id) -> ?NOT_LOADED.
producer_msg_refs(_N) -> ?NOT_LOADED.
mock_new(_Brokers) -> ?NOT_LOADED.
mock_stop(_Res) -> ?NOT_LOADED.
mock_create_topic(_Res, _Topic, _Partitions, _Replication) -> ?NOT_LOADED.
mock_broker_down(_Res, _Broker) -> ?NOT_LOADED.
mock_broker_up(_Res, _Broker) -> ?NOT_LOADED.
mock_set_rtt(_Res, _Broker, _RttMs) -> ?NOT_LOADED.
mock_push_request_errors(_Res, _ApiKey, _Errors) -> ?NOT_LOADED.
mock_clear_request_errors(_Res, _ApiKey) -> ?NOT_LOADED.
mock_set_partition_leader(_Res, _Topic, _Partition, _Broker) -> ?NOT_LOADED.
mock_set_group_initial_rebalance_delay(_Res, _Ms) -> ?NOT_LOADED.
consumer_new(_Name, _Props, _Topics, _Owner, _Credit, _RevokeTimeoutMs) -> ?NOT_LOADED.
consumer_register(_Res, _Topic, _Partition, _Pid) -> ?NOT_LOADED.
consumer_ack(_Res, _Topic, _Partition, _NextOffset) -> ?NOT_LOADED.
consumer_revoke_done(_Res, _Generation) -> ?NOT_LOADED.
consumer_pause(_Res, _Topic, _Partition, _Paused) -> ?NOT_LOADED.
consumer_assignment(_Res) -> ?NOT_LOADED.
consumer_commit(_Res, _Tag) -> ?NOT_LOADED.
consumer_stop(_Res) -> ?NOT_LOADED.
consumer_seek(_Res, _Topic, _Partition, _Offset, _Tag) -> ?NOT_LOADED.
consumer_committed(_Res, _Parts, _TimeoutMs, _Tag) -> ?NOT_LOADED.
client_query(_Res, _Query, _TimeoutMs, _Tag) -> ?NOT_LOADED.
producer_txn(_Res, _Op, _TimeoutMs, _Tag) -> ?NOT_LOADED.
client_oauth_token(_Res, _Answer) -> ?NOT_LOADED.
producer_send_offsets(_Res, _ConsumerRes, _Offsets, _TimeoutMs, _Tag) -> ?NOT_LOADED.
producer_send(_Res, _Topic, _Partition, _Key, _Value, _Headers, _Timestamp) -> ?NOT_LOADED.
consumer_position(_Res, _Parts) -> ?NOT_LOADED.
config_check(_Scope, _Props) -> ?NOT_LOADED.
nif_counters() -> ?NOT_LOADED.
nif_call_times_reset() -> ?NOT_LOADED.
