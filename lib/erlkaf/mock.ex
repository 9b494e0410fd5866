defmodule Erlkaf.Mock do
  @moduledoc """
  An embedded Kafka broker for tests: librdkafka's mock cluster, with real listeners on
  127.0.0.1 and fault injection. No Docker, no JVM.

      iex> {:ok, mock} = Erlkaf.Mock.start(brokers: 1)
      iex> :ok = Erlkaf.Mock.create_topic(mock, "mock-doc", 2)
      iex> "127.0.0.1:" <> _ = Erlkaf.Mock.bootstrap_servers(mock)
      iex> Erlkaf.Mock.stop(mock)
      :ok

  The cluster is destroyed when its owner (the caller of `start/1`, or `:owner`) exits.
  Under ExUnit, `start_supervised!({Erlkaf.Mock, brokers: 3})` ties it to the test.

  Things the mock does differently from Kafka: no admin API (create topics with
  `create_topic/4`; unknown topics are auto-created with 4 partitions), about 5 MB of log
  per partition, produce responses carry LogAppendTime 1234, and an empty fetch is
  answered only after `fetch_wait_max_ms` (use e.g. `fetch_wait_max_ms: 10` in consumers).
  """

  @typedoc "A running mock cluster."
  @type t :: pid()

  @doc """
  Starts a cluster. Options: `:brokers` (default 1), `:owner` (default `self()`),
  `:group_initial_rebalance_delay_ms` (default 100), `:topics` (`[{name, partitions,
  replication_factor}]`).
  """
  @spec start(keyword()) :: {:ok, t()} | {:error, term()}
  def start(opts \\ []), do: :erlkaf_mock.start(Map.new(opts))

  @doc "Starts a cluster linked to the caller (for supervisors and `start_supervised/1`)."
  @spec start_link(keyword()) :: {:ok, t()} | {:error, term()}
  def start_link(opts \\ []) do
    with {:ok, pid} <- start(opts) do
      Process.link(pid)
      {:ok, pid}
    end
  end

  @doc false
  def child_spec(opts), do: %{id: {__MODULE__, make_ref()}, start: {__MODULE__, :start_link, [opts]}}

  @doc "Destroys the cluster."
  @spec stop(t()) :: :ok
  defdelegate stop(mock), to: :erlkaf_mock

  @doc "`\"127.0.0.1:port,...\"`, to use as `bootstrap_servers`."
  @spec bootstrap_servers(t()) :: binary()
  defdelegate bootstrap_servers(mock), to: :erlkaf_mock

  @doc "Creates a topic."
  @spec create_topic(t(), binary(), pos_integer(), pos_integer()) :: :ok | {:error, term()}
  def create_topic(mock, topic, partitions \\ 1, replication_factor \\ 1),
    do: :erlkaf_mock.create_topic(mock, topic, partitions, replication_factor)

  @doc "Disconnects a broker (`-1`: all) and refuses new connections."
  @spec broker_down(t(), integer()) :: :ok | {:error, term()}
  defdelegate broker_down(mock, broker), to: :erlkaf_mock

  @doc "Lets a broker (`-1`: all) accept connections again."
  @spec broker_up(t(), integer()) :: :ok | {:error, term()}
  defdelegate broker_up(mock, broker), to: :erlkaf_mock

  @doc "Adds a round-trip time to every response of a broker (`-1`: all)."
  @spec set_rtt(t(), integer(), non_neg_integer()) :: :ok | {:error, term()}
  defdelegate set_rtt(mock, broker, rtt_ms), to: :erlkaf_mock

  @doc """
  The next requests of an API (`:produce`, `:fetch`, `:metadata`, ... or its key) fail
  with these errors in order (librdkafka names: `:not_leader_for_partition`,
  `:request_timed_out`, ...).
  """
  @spec push_request_errors(t(), atom() | non_neg_integer(), [atom()]) :: :ok | {:error, term()}
  defdelegate push_request_errors(mock, api, errors), to: :erlkaf_mock

  @doc "Moves a partition's leadership to a broker (`-1`: no leader)."
  @spec set_partition_leader(t(), binary(), non_neg_integer(), integer()) :: :ok | {:error, term()}
  defdelegate set_partition_leader(mock, topic, partition, broker), to: :erlkaf_mock
end

if Code.ensure_loaded?(ExUnit.CaseTemplate) do
  defmodule Erlkaf.MockCase do
    @moduledoc """
    An ExUnit case template: a mock cluster per test module and a fresh topic per test.

        defmodule MyApp.KafkaTest do
          use Erlkaf.MockCase, brokers: 1, partitions: 4

          test "round trip", %{bootstrap_servers: servers, topic: topic} do
            :ok = Erlkaf.create_producer(:test_producer, bootstrap_servers: servers)
            assert {:ok, _partition, _offset} = Erlkaf.produce_sync(:test_producer, topic, "k", "v")
          end
        end

    The context gets `:mock`, `:bootstrap_servers` and `:topic` (created with
    `:partitions` partitions, default 1).
    """
    use ExUnit.CaseTemplate

    using opts do
      quote do
        @erlkaf_mock_opts unquote(opts)

        setup_all do
          :ok = Erlkaf.start()
          owner = spawn(fn -> receive do: (:stop -> :ok) end)
          {:ok, mock} = Erlkaf.Mock.start(Keyword.put(@erlkaf_mock_opts, :owner, owner))
          on_exit(fn -> send(owner, :stop) end)
          %{mock: mock, bootstrap_servers: Erlkaf.Mock.bootstrap_servers(mock)}
        end

        setup %{mock: mock} do
          topic = "test-#{System.unique_integer([:positive])}"
          :ok = Erlkaf.Mock.create_topic(mock, topic, Keyword.get(@erlkaf_mock_opts, :partitions, 1))
          %{topic: topic}
        end
      end
    end
  end
end
