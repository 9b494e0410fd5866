defmodule Erlkaf.Producer do
  @moduledoc """
  A producer client under your own supervision tree.

      children = [
        {Erlkaf.Producer,
         name: :events,
         config: [bootstrap_servers: "localhost:9092", delivery_report_callback: MyApp.Reports],
         topics: [{"events", [request_required_acks: 1]}]}
      ]

  Options: `:name` (the client id, required), `:config` (client options, see `Erlkaf`),
  `:topics` (`[{topic, topic_config}]` or topic names, created at start). On shutdown the
  client flushes for up to `stop_flush_timeout_ms`, then purges (each purged message gets
  an error delivery report).
  """

  @doc false
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    name = Keyword.fetch!(opts, :name)
    flush = Keyword.get(Keyword.get(opts, :config, []), :stop_flush_timeout_ms, 30_000)
    # The options are hidden in a fun: supervisor reports print start arguments, and the
    # config may hold secrets (sasl_password...).
    %{id: {__MODULE__, name}, start: {__MODULE__, :start_link, [:erlkaf_config.hide(opts)]}, shutdown: flush + 15_000, type: :worker}
  end

  @doc "Starts the producer linked to the caller."
  @spec start_link(keyword() | (-> keyword())) :: {:ok, pid()} | {:error, term()}
  def start_link(hidden) when is_function(hidden, 0), do: start_link(hidden.())

  def start_link(opts) do
    name = Keyword.fetch!(opts, :name)

    with {:ok, pid} <- :erlkaf.start_producer_link(name, Keyword.get(opts, :config, [])),
         :ok <- create_topics(name, Keyword.get(opts, :topics, [])) do
      {:ok, pid}
    end
  end

  defp create_topics(_name, []), do: :ok

  defp create_topics(name, [topic | rest]) do
    {t, cfg} = if is_tuple(topic), do: topic, else: {topic, []}

    case :erlkaf.create_topic(name, t, cfg) do
      :ok -> create_topics(name, rest)
      error -> error
    end
  end
end
