defmodule Erlkaf.ConsumerGroup do
  @moduledoc """
  A consumer group client under your own supervision tree.

      children = [
        {Erlkaf.ConsumerGroup,
         name: :orders_consumer,
         group_id: "orders",
         topics: ["orders"],
         handler: MyApp.OrderHandler,
         handler_args: %{},
         config: [bootstrap_servers: "localhost:9092"],
         topic_config: [auto_offset_reset: :earliest]}
      ]

  Options: `:name` (client id, required), `:group_id` (required), `:topics` (names, or
  `{name, per_topic_opts}` to override the handler settings per topic), `:handler` (a
  module that `use Erlkaf.Consumer`), `:handler_args`, `:dispatch_mode` (`:one_by_one` or
  `{:batch, n}`), `:max_retries` (`:infinity` or a count), `:config` (client options),
  `:topic_config` (librdkafka topic settings such as `auto_offset_reset`). On shutdown every
  partition process finishes its handler call, offsets are committed and the member
  leaves the group.
  """

  @doc false
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    name = Keyword.fetch!(opts, :name)
    # Hidden in a fun: supervisor reports print start arguments (secrets in the config).
    %{id: {__MODULE__, name}, start: {__MODULE__, :start_link, [:erlkaf_config.hide(opts)]}, shutdown: 90_000, type: :worker}
  end

  @doc "Starts the consumer group client linked to the caller."
  @spec start_link(keyword() | (-> keyword())) :: {:ok, pid()} | {:error, term()}
  def start_link(hidden) when is_function(hidden, 0), do: start_link(hidden.())

  def start_link(opts) do
    {name, group_id, topics, config, topic_config} = Erlkaf.Options.consumer_group(opts)
    :erlkaf.start_consumer_group_link(name, group_id, topics, config, topic_config)
  end
end
