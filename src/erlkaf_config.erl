%%% @doc The one option table of erlkaf: validates client and topic options, splits the
%%% erlkaf-only keys from librdkafka properties, and translates the latter.
%%%
%%% A librdkafka property is reachable three ways: its erlkaf atom (the dotted name with
%%% underscores, e.g. `bootstrap_servers', `enabled_events'; see `erlkaf_properties'), or
%%% its real name as a binary or string (`<<"linger.ms">>'). Values may be binaries,
%%% strings, atoms (`true'/`false' included), integers or floats.
%%%
%%% Errors: an unknown key or a value of the wrong type is `{error, {options, {Key, Value}}}';
%%% a value librdkafka refuses is `{error, {invalid_config, Key, Message}}' with the key as
%%% the user wrote it.
-module(erlkaf_config).

-export([hide/1, reveal/1,
    client/1,
    topic/1,
    erlkaf_defaults/0,
    erlkaf_options/0,
    erlkaf_keys/0,
    user_key/2,
    to_binary/1
]).

-type props() :: [{binary(), binary()}].
-type erlkaf_opts() :: #{atom() => term()}.
-export_type([props/0, erlkaf_opts/0]).

%% @doc Options handled by erlkaf itself, never passed to librdkafka:
%% `{Key, Default, Type, For, Meaning}'. docs/CONFIGURATION.md lists them (a test checks).
-spec erlkaf_options() -> [{atom(), term(), binary(), producer | consumer | all, binary()}].
erlkaf_options() ->
    [
        {delivery_report_callback, undefined, <<"module | fun/3 | fun/2">>, producer,
         <<"Receives every delivery report: a module implementing `erlkaf_producer` "
           "(`delivery_report/3` with the MsgRef, or `delivery_report/2`) or a fun. Without it, "
           "failed deliveries are logged.">>},
        {delivery_report_only_error, false, <<"boolean">>, producer,
         <<"Only failed deliveries reach the callback (filtered by erlkaf: librdkafka still "
           "reports every message, so that payloads are released).">>},
        {delivery_report_priority, high, <<"high | normal | low">>, producer,
         <<"Scheduling priority of the client's producer process, which runs the delivery "
           "report callback. `high`: reports are handled as they arrive even when many "
           "processes produce (at `normal` 16 producing processes left it a 17th of the CPU: "
           "the backlog grew to the full queue and throughput fell by a sixth). Its work is "
           "paced by what is produced, so it cannot keep other processes out for long; choose "
           "`normal` for a callback that does heavy work of its own.">>},
        {error_callback, undefined, <<"module | fun/2">>, all,
         <<"Called with `(ClientId, {error | fatal, Code, Reason})` for librdkafka error "
           "events and `(ClientId, {consume_error, Topic, Partition, Code, Reason})` for "
           "consumer errors; a module gets `error_callback/2`. Errors are also logged.">>},
        {stats_callback, undefined, <<"module | fun/2">>, all,
         <<"Called with `(ClientId, Stats)` every `statistics_interval_ms`: librdkafka's "
           "statistics as maps with binary keys.">>},
        {oauthbearer_token_refresh_callback, undefined, <<"module | fun/1">>, all,
         <<"With `sasl_mechanism` OAUTHBEARER: called (in a process of its own) with the "
           "`sasl_oauthbearer_config` string whenever a token is needed; returns "
           "`{ok, Token, ExpirySec, Principal}`, `{ok, Token, ExpirySec, Principal, Extensions}` "
           "(ExpirySec: absolute, seconds since the epoch; Extensions: `\"k=v,k2=v2\"` or "
           "`[{K, V}]`) or `{error, Reason}`; a module gets `oauthbearer_token_refresh_callback/1`. "
           "Without it librdkafka's own OIDC or unsecured-JWT handling is used.">>},
        {queue_buffering_overflow_strategy, block_calling_process,
         <<"block_calling_process | drop_records | local_disk_queue">>, producer,
         <<"When librdkafka's queue is full: wait for room (backing off, never inside the NIF), "
           "return `{error, queue_full}` at once (counted in `producer_info/1`), or append the "
           "messages to an ordered file (`local_disk_queue_dir`) that is produced from as room "
           "frees up; while it is not empty new messages go behind it. It survives a VM "
           "restart (replayed when a client with the same id starts) and every spilled message "
           "gets its delivery report.">>},
        {local_disk_queue_dir, <<"erlkaf_local_queue">>, <<"path">>, producer,
         <<"Directory of the `local_disk_queue` files (`<client>.spill`, `<client>.spill.pos`).">>},
        {local_disk_queue_max_bytes, 1073741824, <<"integer">>, producer,
         <<"Size limit of a client's spill file: past it, produce calls get "
           "`{error, {local_disk_queue_full, Accepted, NotAccepted}}`.">>},
        {queue_buffering_overflow_timeout_ms, 30000, <<"integer | infinity">>, producer,
         <<"How long `block_calling_process` waits without progress before `{error, queue_full}`.">>},
        {stop_flush_timeout_ms, 30000, <<"integer">>, producer,
         <<"`stop_client/1` flushes for up to this long, then purges: purged messages get "
           "`{error, purge_queue}` reports.">>},
        {max_inflight_batches, 4, <<"integer">>, consumer,
         <<"Unacknowledged batches per partition before the partition is paused (resumed at "
           "half). With `max_inflight_bytes` and `queued_max_messages_kbytes` it bounds "
           "consumer memory.">>},
        {max_inflight_bytes, 4194304, <<"integer">>, consumer,
         <<"Unacknowledged bytes per partition (keys, values and ~200 bytes per message) "
           "before the partition is paused (resumed at half); a batch pushed to a partition's "
           "process holds at most a quarter of them (`max_inflight_bytes / "
           "min(max_inflight_batches, 4)`, or one message). Memory held by slow handlers is "
           "about this times the partitions.">>},
        {revoke_timeout_ms, default, <<"integer">>, consumer,
         <<"Longest wait, on revoke, for the partition workers to stop and store their offsets "
           "(default: half of `max_poll_interval_ms`).">>},
        {worker_stop_timeout_ms, 30000, <<"integer">>, consumer,
         <<"How long a partition worker may take to finish its handler call when asked to "
           "stop (revoke, stop_client) before it is killed.">>}
    ].

%% Defaults of the erlkaf-only options.
-spec erlkaf_defaults() -> erlkaf_opts().
erlkaf_defaults() ->
    maps:from_list([{K, D} || {K, D, _, _, _} <- erlkaf_options()]).

%% @doc The erlkaf-only option names.
-spec erlkaf_keys() -> [atom()].
erlkaf_keys() ->
    maps:keys(erlkaf_defaults()).

%% @doc Splits and translates a client configuration (merged with the application's
%% `global_client_options'; keys given to the client win).
-spec client(list()) -> {ok, props(), erlkaf_opts()} | {error, term()}.
client(Config) when is_list(Config) ->
    Global = application:get_env(erlkaf, global_client_options, []),
    Merged = Config ++ [KV || {K, _} = KV <- Global, not lists:keymember(K, 1, Config)],
    try
        {Props, Opts} = lists:foldl(fun client_entry/2, {[], erlkaf_defaults()}, Merged),
        %% erlkaf's own key (filtered out before librdkafka): ask for refresh events.
        OAuth = [{<<"erlkaf.oauthbearer.token.refresh">>, <<"true">>}
                 || maps:get(oauthbearer_token_refresh_callback, Opts) =/= undefined],
        {ok, lists:reverse(Props) ++ OAuth, Opts}
    catch
        throw:{erlkaf_config, Reason} -> {error, Reason}
    end;
client(Config) ->
    {error, {options, Config}}.

%% @doc Translates a topic configuration (librdkafka topic properties only).
-spec topic(list()) -> {ok, props()} | {error, term()}.
topic(Config) when is_list(Config) ->
    try
        {ok, [topic_entry(E) || E <- Config]}
    catch
        throw:{erlkaf_config, Reason} -> {error, Reason}
    end;
topic(Config) ->
    {error, {options, Config}}.

%% @doc The key the user wrote for a librdkafka property name (for error terms).
-spec user_key(list(), binary()) -> term().
user_key(Config, Name) ->
    Match = [K || {K, _} <- Config, catch name(K) =:= Name],
    case Match of
        [K | _] -> K;
        [] -> Name
    end.

client_entry({Key, Value}, {Props, Opts}) when is_atom(Key) ->
    case maps:is_key(Key, Opts) of
        true -> {Props, Opts#{Key => erlkaf_value(Key, Value)}};
        false -> {[property(Key, Value, [client, topic]) | Props], Opts}
    end;
client_entry({Key, Value}, {Props, Opts}) when is_binary(Key); is_list(Key) ->
    case name(Key) of
        <<"delivery.report.only.error">> ->
            {Props, Opts#{delivery_report_only_error => erlkaf_value(delivery_report_only_error, Value)}};
        Name ->
            {[{Name, value(Key, Value)} | Props], Opts}
    end;
client_entry(Other, _) ->
    bad(Other).

topic_entry({Key, Value}) when is_atom(Key) -> property(Key, Value, [topic]);
topic_entry({Key, Value}) when is_binary(Key); is_list(Key) -> {name(Key), value(Key, Value)};
topic_entry(Other) -> bad(Other).

property(Key, Value, Scopes) ->
    case erlkaf_properties:lookup(Key) of
        {ok, Name, Scope} ->
            lists:member(Scope, Scopes) orelse bad({Key, Value}),
            {Name, value(Key, Value)};
        error ->
            bad({Key, Value})
    end.

name(Key) when is_atom(Key) ->
    case erlkaf_properties:lookup(Key) of
        {ok, Name, _} -> Name;
        error -> atom_to_binary(Key, utf8)
    end;
name(Key) when is_binary(Key) -> Key;
name(Key) when is_list(Key) ->
    case unicode:characters_to_binary(Key) of
        B when is_binary(B) -> B;
        _ -> bad(Key)
    end.

value(Key, Value) ->
    case to_binary(Value) of
        {ok, B} -> B;
        error -> bad({Key, Value})
    end.

%% @doc A configuration value as librdkafka text.
-spec to_binary(term()) -> {ok, binary()} | error.
to_binary(V) when is_binary(V) -> {ok, V};
to_binary(V) when is_atom(V) -> {ok, atom_to_binary(V, utf8)};
to_binary(V) when is_integer(V) -> {ok, integer_to_binary(V)};
to_binary(V) when is_float(V) -> {ok, float_to_binary(V, [{decimals, 8}, compact])};
to_binary(V) when is_list(V) ->
    case catch unicode:characters_to_binary(V) of
        B when is_binary(B) -> {ok, B};
        _ -> error
    end;
to_binary(_) -> error.

erlkaf_value(delivery_report_callback = K, V) ->
    valid(K, V, is_atom(V) orelse is_function(V, 2) orelse is_function(V, 3));
erlkaf_value(K, V) when K =:= stats_callback; K =:= error_callback ->
    valid(K, V, is_atom(V) orelse is_function(V, 2));
erlkaf_value(oauthbearer_token_refresh_callback = K, V) ->
    valid(K, V, is_atom(V) orelse is_function(V, 1));
erlkaf_value(delivery_report_only_error = K, V) ->
    case V of
        <<"true">> -> true;
        "true" -> true;
        <<"false">> -> false;
        "false" -> false;
        _ -> valid(K, V, is_boolean(V))
    end;
erlkaf_value(delivery_report_priority = K, V) ->
    valid(K, V, lists:member(V, [high, normal, low]));
erlkaf_value(queue_buffering_overflow_strategy = K, V) ->
    valid(K, V, lists:member(V, [block_calling_process, drop_records, local_disk_queue]));
erlkaf_value(local_disk_queue_dir = K, V) ->
    valid(K, V, nonempty_iodata(V));
erlkaf_value(local_disk_queue_max_bytes = K, V) ->
    valid(K, V, is_integer(V) andalso V > 0);
erlkaf_value(queue_buffering_overflow_timeout_ms = K, V) ->
    valid(K, V, V =:= infinity orelse (is_integer(V) andalso V >= 0));
erlkaf_value(max_inflight_batches = K, V) ->
    valid(K, V, is_integer(V) andalso V > 0 andalso V < 1 bsl 31);
erlkaf_value(max_inflight_bytes = K, V) ->
    valid(K, V, is_integer(V) andalso V > 0 andalso V < 1 bsl 63);
erlkaf_value(K, V) when K =:= revoke_timeout_ms; K =:= worker_stop_timeout_ms ->
    valid(K, V, is_integer(V) andalso V >= 0 andalso V < 1 bsl 31);
erlkaf_value(stop_flush_timeout_ms = K, V) ->
    valid(K, V, is_integer(V) andalso V >= 0 andalso V < 1 bsl 31).

nonempty_iodata(V) ->
    try iolist_size(V) > 0 catch error:badarg -> false end.

valid(_, V, true) -> V;
valid(K, V, false) -> bad({K, V}).

-spec bad(term()) -> no_return().
bad(What) ->
    throw({erlkaf_config, {options, What}}).

%% @doc Wraps a term holding secrets (sasl.password, ssl.key.password...) in a fun, so
%% that supervisor and crash reports, which print start arguments and states, show
%% `#Fun<...>' instead of the secret.
-spec hide(T) -> fun(() -> T).
hide(T) -> fun() -> T end.

%% @doc The term `hide/1' wrapped (or the term itself).
-spec reveal(fun(() -> T) | T) -> T.
reveal(F) when is_function(F, 0) -> F();
reveal(T) -> T.
