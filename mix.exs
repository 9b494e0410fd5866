# erlkaf as a mix project. No hex dependency: the NIF is built by cargo through the
# `erlkaf_nif` compiler below (native/build.sh, the same script rebar3 runs), which also
# works when erlkaf is a dependency under deps/.
defmodule Mix.Tasks.Compile.ErlkafNif do
  @moduledoc false
  use Mix.Task.Compiler

  @impl true
  def run(_args) do
    script = Path.join([__DIR__, "native", "build.sh"])

    case System.cmd("bash", [script], stderr_to_stdout: true, into: IO.stream(:stdio, :line)) do
      {_, 0} -> {:ok, []}
      {_, status} -> Mix.raise("erlkaf: building the NIF failed (exit #{status}); see the output above")
    end
  end
end

defmodule Erlkaf.MixProject do
  use Mix.Project

  def project do
    [
      app: :erlkaf,
      version: "0.1.0",
      elixir: "~> 1.14",
      compilers: [:erlkaf_nif] ++ Mix.compilers(),
      erlc_paths: ["src"],
      erlc_include_path: "include",
      erlc_options: [:debug_info, :warnings_as_errors],
      elixirc_paths: ["lib"],
      test_paths: ["test/elixir"],
      deps: [],
      description: "Kafka client for Erlang and Elixir: a Rust NIF over librdkafka",
      package: [licenses: ["MIT"], files: ~w(src include lib native priv/.gitkeep bin Cargo.toml Cargo.lock mix.exs rebar.config README.md)]
    ]
  end

  def application do
    [mod: {:erlkaf_app, []}, extra_applications: [:logger]]
  end
end
