defmodule Erlkaf.Message do
  @moduledoc """
  A Kafka message as consumers and delivery reports see it: the Elixir face of the
  `#erlkaf_msg{}` record.

      iex> record = {:erlkaf_msg, "events", 0, 42, "k", "v", [{"h", "1"}], {1_700_000_000_000, :create_time}}
      iex> msg = Erlkaf.Message.from_record(record)
      iex> {msg.topic, msg.offset, msg.timestamp_type}
      {"events", 42, :create_time}
      iex> Erlkaf.Message.to_record(msg) == record
      true
  """

  @enforce_keys [:topic, :partition, :offset]
  defstruct [:topic, :partition, :offset, :key, :value, :headers, :timestamp, timestamp_type: :not_available]

  @typedoc "Timestamp kinds Kafka knows."
  @type timestamp_type :: :create_time | :log_append_time | :not_available

  @typedoc """
  `key`/`value` are `nil` for null (a `nil` value is a tombstone); `headers` is `nil` when
  the message has none, else a list of `{name, value}` in order.
  """
  @type t :: %__MODULE__{
          topic: binary(),
          partition: non_neg_integer(),
          offset: integer(),
          key: binary() | nil,
          value: binary() | nil,
          headers: [{binary(), binary() | nil}] | nil,
          timestamp: integer(),
          timestamp_type: timestamp_type()
        }

  @doc "Converts an `#erlkaf_msg{}` record (a tuple) into a struct."
  @spec from_record(tuple()) :: t()
  def from_record({:erlkaf_msg, topic, partition, offset, key, value, headers, {ts, ts_type}}) do
    %__MODULE__{
      topic: topic,
      partition: partition,
      offset: offset,
      key: nil_if_undefined(key),
      value: nil_if_undefined(value),
      headers: headers |> nil_if_undefined() |> headers_in(),
      timestamp: ts,
      timestamp_type: ts_type
    }
  end

  @doc "Converts a struct back into the `#erlkaf_msg{}` record."
  @spec to_record(t()) :: tuple()
  def to_record(%__MODULE__{} = m) do
    {:erlkaf_msg, m.topic, m.partition, m.offset, undefined_if_nil(m.key), undefined_if_nil(m.value),
     m.headers |> headers_out() |> undefined_if_nil(), {m.timestamp, m.timestamp_type}}
  end

  defp nil_if_undefined(:undefined), do: nil
  defp nil_if_undefined(v), do: v
  defp undefined_if_nil(nil), do: :undefined
  defp undefined_if_nil(v), do: v
  defp headers_in(nil), do: nil
  defp headers_in(hs), do: Enum.map(hs, fn {k, v} -> {k, nil_if_undefined(v)} end)
  defp headers_out(nil), do: nil
  defp headers_out(hs), do: Enum.map(hs, fn {k, v} -> {k, undefined_if_nil(v)} end)
end
