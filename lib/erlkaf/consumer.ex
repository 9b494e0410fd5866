defmodule Erlkaf.Consumer do
  @moduledoc """
  The consumer behaviour for Elixir: `use Erlkaf.Consumer` and implement
  `c:handle_message/2`. One process per assigned partition calls it, in offset order, with
  `%Erlkaf.Message{}` structs.

      defmodule MyApp.Handler do
        use Erlkaf.Consumer

        @impl true
        def handle_message(%Erlkaf.Message{value: value}, state) do
          IO.puts(value)
          {:ok, state}
        end
      end

  Start it with `Erlkaf.start_consumer_group/2` or the `Erlkaf.ConsumerGroup` child spec.
  """

  @typedoc "The handler's state."
  @type state :: term()

  @doc """
  Called in the partition's process when the partition is assigned (again after each
  rebalance that gives it to this member). `offset` is the assignment's start offset
  (-1001: the committed offset). The default returns `{:ok, args}`.

  The partitions' `init/4` calls run side by side and hold nothing else up: a slow one
  delays only its own partition. Anything but `{:ok, state}` (or an exception) pauses
  the partition until the next rebalance, with an error logged.
  """
  @callback init(topic :: binary(), partition :: non_neg_integer(), offset :: integer(), args :: term()) ::
              {:ok, state()}

  @doc """
  One message (`dispatch_mode: :one_by_one`, the default) or a list of messages of one
  partition (`dispatch_mode: {:batch, n}`).

  - `{:ok, state}`: processed; the offset is stored and committed later.
  - `{:error, reason, state}` or an exception: retried with backoff; after `max_retries`
    the message goes to `c:handle_failed_message/2` and is skipped.
  - `{:stop, reason, state}`: the partition's process stops without storing this offset;
    the partition is paused until the next rebalance.
  """
  @callback handle_message(Erlkaf.Message.t() | [Erlkaf.Message.t()], state()) ::
              {:ok, state()} | {:error, term(), state()} | {:stop, term(), state()}

  @doc "Dead-letter hook: the message (or batch) that failed `max_retries` times."
  @callback handle_failed_message(Erlkaf.Message.t() | [Erlkaf.Message.t()], state()) :: {:ok, state()}

  @optional_callbacks handle_failed_message: 2

  defmacro __using__(_opts) do
    quote do
      @behaviour Erlkaf.Consumer

      @doc false
      # Tells the partition worker to hand over %Erlkaf.Message{} structs.
      def __erlkaf_structs__, do: true

      @impl Erlkaf.Consumer
      def init(_topic, _partition, _offset, args), do: {:ok, args}

      defoverridable init: 4
    end
  end
end
