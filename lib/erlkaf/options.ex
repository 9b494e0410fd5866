defmodule Erlkaf.Options do
  @moduledoc false
  # Elixir options to the Erlang API's arguments, in one place.

  @handler_keys [:handler, :handler_args, :dispatch_mode, :max_retries]

  @doc false
  @spec consumer_group(keyword()) :: {term(), binary(), list(), keyword(), keyword()}
  def consumer_group(opts) do
    name = Keyword.fetch!(opts, :name)
    group_id = opts |> Keyword.fetch!(:group_id) |> to_string()
    defaults = Keyword.take(opts, @handler_keys)

    topics =
      opts
      |> Keyword.fetch!(:topics)
      |> Enum.map(fn
        {topic, topic_opts} -> {to_string(topic), topic_settings(Keyword.merge(defaults, topic_opts))}
        topic -> {to_string(topic), topic_settings(defaults)}
      end)

    {name, group_id, topics, Keyword.get(opts, :config, []), Keyword.get(opts, :topic_config, [])}
  end

  defp topic_settings(opts) do
    handler = Keyword.get(opts, :handler) || raise ArgumentError, "erlkaf: :handler is required"

    [
      callback_module: handler,
      callback_args: Keyword.get(opts, :handler_args, []),
      dispatch_mode: Keyword.get(opts, :dispatch_mode, :one_by_one),
      max_retries: Keyword.get(opts, :max_retries, :infinity)
    ]
  end
end
