defmodule Erlkaf do
  @moduledoc """
  A Kafka client for Elixir: a Rust NIF over librdkafka. Thin wrappers over the Erlang API
  (`:erlkaf`) with Elixir conventions: keyword options, `nil` for null keys and values,
  `{:ok, _}` / `{:error, _}` results and `!` variants that raise.

  Producing never waits on Kafka: `produce/5` hands the message to librdkafka and returns a
  msg ref (see `t:msg_ref/0`); the delivery report arrives later through the client's
  `delivery_report_callback`. A value given as one binary is passed by reference.

      iex> {:ok, mock} = Erlkaf.Mock.start()
      iex> :ok = Erlkaf.create_producer(:moduledoc_producer, bootstrap_servers: Erlkaf.Mock.bootstrap_servers(mock))
      iex> {:ok, _partition, offset} = Erlkaf.produce_sync(:moduledoc_producer, "moduledoc", "key", "value")
      iex> offset
      0
      iex> Erlkaf.stop_client(:moduledoc_producer)
      :ok

  ## Options

  Client options are librdkafka properties as atoms (`bootstrap_servers`, `linger_ms`,
  `enable_idempotence`, ...: the property name with underscores) or real names as strings
  (`"linger.ms"`), plus erlkaf's own: `delivery_report_callback` (a module implementing
  `:erlkaf_producer`, or a function of arity 3 or 2), `delivery_report_only_error`,
  `delivery_report_priority` (`:high`, the default, `:normal` or `:low`),
  `error_callback`, `stats_callback`, `queue_buffering_overflow_strategy`
  (`:block_calling_process`, `:drop_records` or `:local_disk_queue`), `queue_buffering_overflow_timeout_ms`,
  `stop_flush_timeout_ms`, and for consumers `max_inflight_batches`, `max_inflight_bytes`, `revoke_timeout_ms`,
  `worker_stop_timeout_ms`.
  """

  @typedoc "A client id: an atom (or a binary)."
  @type client :: atom() | binary()
  @typedoc "A topic name."
  @type topic :: binary()
  @typedoc "A key or value; `nil` is null."
  @type data :: iodata() | nil
  @typedoc "Headers: `[{name, value}]` or a map."
  @type headers :: [{iodata() | atom(), iodata() | nil}] | %{optional(iodata() | atom()) => iodata() | nil}
  @typedoc """
  A msg ref: a positive integer naming one produced message, unique within the VM (across
  producers); its delivery report carries it.
  """
  @type msg_ref :: pos_integer()
  @typedoc "Produce options: `:headers`, `:partition` (-1: partitioner), `:timestamp` (ms)."
  @type produce_opts :: [headers: headers(), partition: integer(), timestamp: non_neg_integer()]

  @doc "Starts the erlkaf application."
  @spec start() :: :ok | {:error, term()}
  def start, do: :erlkaf.start()

  @doc """
  Starts a producer client with id `client`.

      iex> Erlkaf.create_producer(:bad_producer, linger_ms: :banana)
      {:error, {:invalid_config, :linger_ms, "Invalid value for configuration property \\"queue.buffering.max.ms\\""}}
  """
  @spec create_producer(client(), keyword()) :: :ok | {:error, term()}
  def create_producer(client, config), do: :erlkaf.create_producer(client, config)

  @doc "Creates the producer's handle for `topic` with its own librdkafka topic settings."
  @spec create_topic(client(), topic(), keyword()) :: :ok | {:error, term()}
  def create_topic(client, topic, config \\ []), do: :erlkaf.create_topic(client, topic, config)

  @doc "Stops a client (a producer flushes, then purges what is left with error reports)."
  @spec stop_client(client()) :: :ok | {:error, :undefined_client}
  def stop_client(client), do: :erlkaf.stop_client(client)

  @doc """
  Produces one message; returns the msg ref its delivery report will carry.

      iex> {:ok, mock} = Erlkaf.Mock.start()
      iex> :ok = Erlkaf.create_producer(:produce_doc, bootstrap_servers: Erlkaf.Mock.bootstrap_servers(mock))
      iex> {:ok, ref} = Erlkaf.produce(:produce_doc, "events", "key", "value", headers: [{"h", "1"}], partition: 0)
      iex> is_integer(ref) and ref > 0
      true
      iex> Erlkaf.produce(:produce_doc, "events", 42, "value")
      {:error, {:badarg, :key}}
      iex> Erlkaf.stop_client(:produce_doc)
      :ok
  """
  @spec produce(client(), topic(), data(), data(), produce_opts()) :: {:ok, msg_ref()} | {:error, term()}
  def produce(client, topic, key, value, opts \\ []) do
    :erlkaf.produce(client, topic, Keyword.get(opts, :partition, -1), undef(key), undef(value),
      Keyword.get(opts, :headers, :undefined), Keyword.get(opts, :timestamp, 0))
  end

  @doc "Like `produce/5`, returning the msg ref or raising `Erlkaf.Error`."
  @spec produce!(client(), topic(), data(), data(), produce_opts()) :: msg_ref()
  def produce!(client, topic, key, value, opts \\ []),
    do: unwrap!(produce(client, topic, key, value, opts), :produce)

  @doc """
  Produces a batch to one topic. Messages are values, `{key, value}` tuples or maps with
  `:key`, `:value`, `:headers`, `:partition`, `:timestamp`.

  Returns `{:ok, refs}`, or `{:error, {reason, accepted_refs, not_accepted}}`: the first
  `length(accepted_refs)` messages were accepted (each gets a report), `not_accepted` is the
  rest of your list starting with the refused message.

  Option `refs: false`: no msg ref is made per message; the counts come back instead
  (`{:ok, count}`, `{:error, {reason, accepted_count, not_accepted}}`) and delivery reports
  carry `:undefined` for the msg ref. For producers that do not match reports to
  messages: one process produces a few percent more small messages per second.

  Messages without a key or partition go to the topic's sticky partition, as librdkafka
  places them (changed every `sticky_partitioning_linger_ms`, by default twice
  `linger_ms`), decided once for a run of them: a batch's keyless messages share one
  partition. Give each message a `:partition` to spread a batch yourself.

      iex> {:ok, mock} = Erlkaf.Mock.start()
      iex> :ok = Erlkaf.create_producer(:batch_doc, bootstrap_servers: Erlkaf.Mock.bootstrap_servers(mock))
      iex> {:ok, refs} = Erlkaf.produce_batch(:batch_doc, "events", ["a", {"k", "b"}, %{value: "c", partition: 1}])
      iex> length(refs)
      3
      iex> {:error, {{:badarg, :value}, [_one], [{"k", 1}]}} = Erlkaf.produce_batch(:batch_doc, "events", ["a", {"k", 1}])
      iex> Erlkaf.produce_batch(:batch_doc, "events", ["a", "b"], refs: false)
      {:ok, 2}
      iex> Erlkaf.stop_client(:batch_doc)
      :ok
  """
  @spec produce_batch(client(), topic(), [term()], keyword()) ::
          {:ok, [msg_ref()] | non_neg_integer()}
          | {:error, {term(), [msg_ref()] | non_neg_integer(), [term()]}}
          | {:error, term()}
  def produce_batch(client, topic, messages, opts \\ []),
    do: :erlkaf.produce_batch(client, topic, Enum.map(messages, &batch_msg/1), Map.new(opts))

  @doc """
  Produces one message and waits for its delivery report: `{:ok, partition, offset}`.
  Options: those of `produce/5` and `:timeout` (ms, default 30000).
  """
  @spec produce_sync(client(), topic(), data(), data(), keyword()) ::
          {:ok, non_neg_integer(), integer()} | {:error, term()}
  def produce_sync(client, topic, key, value, opts \\ []),
    do: :erlkaf.produce_sync(client, topic, undef(key), undef(value), Map.new(opts))

  @doc "Waits until every message produced so far was reported (default 30000 ms)."
  @spec flush(client(), non_neg_integer()) :: :ok | {:error, term()}
  def flush(client, timeout \\ 30_000), do: :erlkaf.flush(client, timeout)

  @doc """
  Starts a consumer group client; see `Erlkaf.ConsumerGroup` for the options.

      iex> {:ok, mock} = Erlkaf.Mock.start()
      iex> Erlkaf.start_consumer_group(:doc_group, group_id: "docs", topics: ["events"],
      ...>   handler: Erlkaf.Test.NoopHandler, config: [bootstrap_servers: Erlkaf.Mock.bootstrap_servers(mock)])
      :ok
      iex> Erlkaf.stop_client(:doc_group)
      :ok
  """
  @spec start_consumer_group(client(), keyword()) :: :ok | {:error, term()}
  def start_consumer_group(client, opts) do
    {name, group_id, topics, config, topic_config} = Erlkaf.Options.consumer_group([{:name, client} | opts])
    :erlkaf.create_consumer_group(name, group_id, topics, config, topic_config)
  end

  @doc "The partitions assigned to this member: `{:ok, [{topic, partition}]}`."
  @spec assignment(client()) :: {:ok, [{topic(), non_neg_integer()}]} | {:error, term()}
  def assignment(client), do: :erlkaf.assignment(client)

  @doc "Commits the offsets handlers finished and waits for the broker."
  @spec commit_offsets(client(), non_neg_integer()) :: :ok | {:error, term()}
  def commit_offsets(client, timeout \\ 30_000), do: :erlkaf.commit_offsets(client, timeout)

  @doc """
  Stops fetching an assigned partition until `resume/3` or the next rebalance. Returns at
  once (the client's pump thread applies it); batches already fetched still arrive. Flow
  control never resumes a partition paused here. `{:error, :unknown_partition}` when the
  partition is not assigned to this member.

      :ok = Erlkaf.pause(:my_group, "events", 0)
  """
  @spec pause(client(), topic(), non_neg_integer()) :: :ok | {:error, term()}
  def pause(client, topic, partition), do: :erlkaf.pause(client, topic, partition)

  @doc "Fetches a paused partition again."
  @spec resume(client(), topic(), non_neg_integer()) :: :ok | {:error, term()}
  def resume(client, topic, partition), do: :erlkaf.resume(client, topic, partition)

  @doc "Moves a partition's position: an offset, `:beginning` or `:end`."
  @spec seek(client(), topic(), non_neg_integer(), integer() | :beginning | :end) :: :ok | {:error, term()}
  def seek(client, topic, partition, offset), do: :erlkaf.seek(client, topic, partition, offset)

  @doc "Committed offsets (asked of the broker) of the assigned partitions or of a list."
  @spec committed(client(), :assigned | [{topic(), non_neg_integer()}]) ::
          {:ok, [{topic(), non_neg_integer(), integer()}]} | {:error, term()}
  def committed(client, parts \\ :assigned), do: :erlkaf.committed(client, parts)

  @doc "Fetch positions of the assigned partitions or of a list."
  @spec position(client(), :assigned | [{topic(), non_neg_integer()}]) ::
          {:ok, [{topic(), non_neg_integer(), integer()}]} | {:error, term()}
  def position(client, parts \\ :assigned), do: :erlkaf.position(client, parts)

  ## Metadata, offsets, admin, statistics (producers and consumers)

  @doc """
  Brokers, topics, partitions, leaders and replicas, for every topic or one.

      iex> {:ok, mock} = Erlkaf.Mock.start()
      iex> :ok = Erlkaf.create_producer(:meta_doc, bootstrap_servers: Erlkaf.Mock.bootstrap_servers(mock))
      iex> {:ok, %{brokers: [_ | _], topics: [%{name: "doc-meta", partitions: parts}]}} =
      ...>   Erlkaf.metadata(:meta_doc, "doc-meta")
      iex> length(parts)
      4
      iex> Erlkaf.stop_client(:meta_doc)
      :ok
  """
  @spec metadata(client(), topic() | nil) :: {:ok, map()} | {:error, term()}
  def metadata(client, topic \\ nil)
  def metadata(client, nil), do: :erlkaf.get_metadata(client)
  def metadata(client, topic), do: :erlkaf.get_metadata(client, topic)

  @doc "The number of partitions of a topic."
  @spec partitions_count(client(), topic()) :: {:ok, pos_integer()} | {:error, term()}
  def partitions_count(client, topic), do: :erlkaf.get_partitions_count(client, topic)

  @doc "The low and high watermark offsets of a partition: `{:ok, {low, high}}`."
  @spec watermark_offsets(client(), topic(), non_neg_integer()) :: {:ok, {integer(), integer()}} | {:error, term()}
  def watermark_offsets(client, topic, partition), do: :erlkaf.query_watermark_offsets(client, topic, partition)

  @doc "For each `{topic, partition, timestamp_ms}`: the first offset at or after it."
  @spec offsets_for_times(client(), [{topic(), non_neg_integer(), non_neg_integer()}]) ::
          {:ok, [{topic(), non_neg_integer(), integer() | {:error, term()}}]} | {:error, term()}
  def offsets_for_times(client, parts), do: :erlkaf.offsets_for_times(client, parts)

  @doc "A consumer group's lag per assigned partition (high watermark - committed)."
  @spec consumer_lag(client()) :: {:ok, [{topic(), non_neg_integer(), non_neg_integer()}]} | {:error, term()}
  def consumer_lag(client), do: :erlkaf.consumer_lag(client)

  @doc """
  Creates topics: `{name, partitions, replication_factor}`, with a config list as 4th
  element, or a map with `:name`, `:partitions`, `:replication_factor`, `:config`.
  Results are per topic: `{:ok, [{name, :ok | {:error, code, message}}]}`.
  """
  @spec create_topics(client(), [tuple() | map()], non_neg_integer()) :: {:ok, list()} | {:error, term()}
  def create_topics(client, topics, timeout \\ 30_000), do: :erlkaf.create_topics(client, topics, timeout)

  @doc "Deletes topics; results per topic."
  @spec delete_topics(client(), [topic()], non_neg_integer()) :: {:ok, list()} | {:error, term()}
  def delete_topics(client, topics, timeout \\ 30_000), do: :erlkaf.delete_topics(client, topics, timeout)

  @doc "Raises partition counts: `[{topic, new_total}]`; results per topic."
  @spec create_partitions(client(), [{topic(), pos_integer()}], non_neg_integer()) :: {:ok, list()} | {:error, term()}
  def create_partitions(client, totals, timeout \\ 30_000), do: :erlkaf.create_partitions(client, totals, timeout)

  @doc "The consumer groups the cluster knows: `{:ok, [%{group_id: id, simple: bool, state: state}]}`."
  @spec list_groups(client(), non_neg_integer()) :: {:ok, [map()]} | {:error, term()}
  def list_groups(client, timeout \\ 30_000), do: :erlkaf.list_groups(client, timeout)

  @doc "State, assignor, coordinator and members (with their partitions) of consumer groups."
  @spec describe_groups(client(), [String.t()], non_neg_integer()) :: {:ok, [map()]} | {:error, term()}
  def describe_groups(client, group_ids, timeout \\ 30_000), do: :erlkaf.describe_groups(client, group_ids, timeout)

  @doc "Configuration entries of `{:topic, name}` and `{:broker, id}` resources."
  @spec describe_configs(client(), [{:topic, topic()} | {:broker, non_neg_integer()}], non_neg_integer()) ::
          {:ok, list()} | {:error, term()}
  def describe_configs(client, resources, timeout \\ 30_000), do: :erlkaf.describe_configs(client, resources, timeout)

  @doc "Deletes records before `{topic, partition, offset}` (-1: everything); new low watermarks."
  @spec delete_records(client(), [{topic(), non_neg_integer(), integer()}], non_neg_integer()) ::
          {:ok, list()} | {:error, term()}
  def delete_records(client, before, timeout \\ 30_000), do: :erlkaf.delete_records(client, before, timeout)

  ## Transactions (a producer with `transactional_id`)

  @doc "Registers the transactional id (fencing older producers). Once per producer."
  @spec init_transactions(client(), non_neg_integer()) :: :ok | {:error, term()}
  def init_transactions(client, timeout \\ 30_000), do: :erlkaf.init_transactions(client, timeout)

  @doc "Starts a transaction."
  @spec begin_transaction(client()) :: :ok | {:error, term()}
  def begin_transaction(client), do: :erlkaf.begin_transaction(client)

  @doc "Commits the transaction (flushing its messages first)."
  @spec commit_transaction(client(), non_neg_integer()) :: :ok | {:error, term()}
  def commit_transaction(client, timeout \\ 30_000), do: :erlkaf.commit_transaction(client, timeout)

  @doc "Aborts the transaction."
  @spec abort_transaction(client(), non_neg_integer()) :: :ok | {:error, term()}
  def abort_transaction(client, timeout \\ 30_000), do: :erlkaf.abort_transaction(client, timeout)

  @doc "Commits a consumer group's next offsets `[{topic, partition, offset}]` with the transaction."
  @spec send_offsets_to_transaction(client(), client(), [{topic(), non_neg_integer(), non_neg_integer()}], non_neg_integer()) ::
          :ok | {:error, term()}
  def send_offsets_to_transaction(client, group_client, offsets, timeout \\ 30_000),
    do: :erlkaf.send_offsets_to_transaction(client, group_client, offsets, timeout)

  @doc "The latest librdkafka statistics as maps (`statistics_interval_ms` must be set)."
  @spec stats(client()) :: {:ok, map()} | {:error, term()}
  def stats(client), do: :erlkaf.get_stats(client)

  defp undef(nil), do: :undefined
  defp undef(v), do: v

  defp batch_msg({k, v}), do: {undef(k), undef(v)}
  defp batch_msg(%{} = m), do: Map.new(m, fn {k, v} -> {k, if(k in [:key, :value], do: undef(v), else: v)} end)
  defp batch_msg(v), do: v

  defp unwrap!({:ok, v}, _op), do: v
  defp unwrap!({:error, reason}, op), do: raise(Erlkaf.Error, op: op, reason: reason)
end

defmodule Erlkaf.Error do
  @moduledoc "Raised by the `!` functions of `Erlkaf`; `reason` is the `{:error, reason}` term."
  defexception [:op, :reason]

  @impl true
  def message(%{op: op, reason: reason}), do: "erlkaf #{op} failed: #{inspect(reason)}"
end
