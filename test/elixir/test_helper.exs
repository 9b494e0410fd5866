:ok = Erlkaf.start()

defmodule Erlkaf.Test.NoopHandler do
  use Erlkaf.Consumer

  @impl true
  def handle_message(_msg, state), do: {:ok, state}
end

ExUnit.start()
