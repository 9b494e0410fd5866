defmodule Erlkaf.ConsumerTest do
  use Erlkaf.MockCase, brokers: 1, partitions: 2

  defmodule Forward do
    use Erlkaf.Consumer

    @impl true
    def init(topic, partition, _offset, pid) do
      send(pid, {:init, topic, partition})
      {:ok, pid}
    end

    @impl true
    def handle_message(%Erlkaf.Message{} = msg, pid) do
      send(pid, {:message, msg})
      {:ok, pid}
    end

    def handle_message(msgs, pid) when is_list(msgs) do
      send(pid, {:batch, msgs})
      {:ok, pid}
    end
  end

  defp consumer_config(servers),
    do: [bootstrap_servers: servers, fetch_wait_max_ms: 10, session_timeout_ms: 6000]

  test "messages reach an Elixir handler as structs", %{bootstrap_servers: servers, topic: topic} do
    :ok = Erlkaf.create_producer(:ex_producer, bootstrap_servers: servers)
    {:ok, 0, 0} = Erlkaf.produce_sync(:ex_producer, topic, "k", "v", partition: 0, headers: %{"h" => "x"}, timestamp: 1_700_000_000_000)
    {:ok, 1, 0} = Erlkaf.produce_sync(:ex_producer, topic, nil, nil, partition: 1)

    :ok =
      Erlkaf.start_consumer_group(:ex_group,
        group_id: "ex-#{topic}", topics: [topic], handler: Forward, handler_args: self(),
        config: consumer_config(servers), topic_config: [auto_offset_reset: :earliest])

    assert_receive {:message, %Erlkaf.Message{partition: 0, offset: 0, key: "k", value: "v", headers: [{"h", "x"}],
                                              timestamp: 1_700_000_000_000, timestamp_type: :create_time}}, 20_000
    assert_receive {:message, %Erlkaf.Message{partition: 1, key: nil, value: nil}}, 20_000
    assert {:ok, parts} = Erlkaf.assignment(:ex_group)
    assert length(parts) == 2
    :ok = Erlkaf.stop_client(:ex_group)
    :ok = Erlkaf.stop_client(:ex_producer)
  end

  test "child specs start clients under a supervisor and stop them with it",
       %{bootstrap_servers: servers, topic: topic} do
    children = [
      {Erlkaf.Producer, name: :sup_producer, config: [bootstrap_servers: servers], topics: [{topic, [request_required_acks: 1]}]},
      {Erlkaf.ConsumerGroup,
       name: :sup_group, group_id: "sup-#{topic}", topics: [topic], handler: Forward, handler_args: self(),
       dispatch_mode: {:batch, 10}, config: consumer_config(servers), topic_config: [auto_offset_reset: :earliest]}
    ]

    {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
    {:ok, refs} = Erlkaf.produce_batch(:sup_producer, topic, Enum.map(1..20, &"m#{&1}"))
    assert length(refs) == 20
    values = receive_batches(20, [])
    assert Enum.sort(values) == Enum.sort(Enum.map(1..20, &"m#{&1}"))
    # The topic handle was created by the child spec.
    assert {:error, :already_exists} = Erlkaf.create_topic(:sup_producer, topic)
    :ok = Supervisor.stop(sup)
    assert {:error, :undefined_client} = Erlkaf.produce(:sup_producer, topic, "k", "v")
    assert {:error, :undefined_client} = Erlkaf.assignment(:sup_group)
  end

  test "produce! raises with the reason", %{bootstrap_servers: servers, topic: topic} do
    :ok = Erlkaf.create_producer(:raise_producer, bootstrap_servers: servers)
    assert is_integer(Erlkaf.produce!(:raise_producer, topic, "k", "v"))
    assert_raise Erlkaf.Error, ~r/badarg/, fn -> Erlkaf.produce!(:raise_producer, topic, :bad, "v") end
    :ok = Erlkaf.stop_client(:raise_producer)
  end

  defp receive_batches(n, acc) when length(acc) >= n, do: acc

  defp receive_batches(n, acc) do
    receive do
      {:batch, msgs} -> receive_batches(n, acc ++ Enum.map(msgs, & &1.value))
    after
      20_000 -> flunk("missing messages: got #{length(acc)}")
    end
  end
end
