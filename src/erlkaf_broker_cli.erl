%%% @doc `bin/erlkaf-broker': runs the embedded mock cluster in its own OS process so that
%%% any Kafka client (kcat, another VM, a benchmark) can use it. Prints
%%% `bootstrap_servers=HOST:PORT,...' on the first line, then serves until the VM is
%%% stopped (SIGTERM) or, with `--stdin', until standard input closes.
-module(erlkaf_broker_cli).

-export([main/1, spawn_os_process/1]).

%% @doc Starts the broker in its own OS process, owned by a new process that stops it when
%% sent `stop' (or when it dies: the broker exits when its standard input closes). Runs
%% `bin/erlkaf-broker' when erlkaf sits in a source tree, else `erl' with this code path.
%% Used by the demo, the benchmarks and the tests.
-spec spawn_os_process([string()]) -> {ok, pid(), binary()} | {error, term()}.
spawn_os_process(Args) ->
    Self = self(),
    Ref = make_ref(),
    {Exe, ExeArgs} = case script() of
        {ok, Script} -> {Script, Args ++ ["--stdin"]};
        error ->
            Ebin = filename:dirname(code:which(?MODULE)),
            {os:find_executable("erl"),
             ["-noshell", "-pa", Ebin, "-eval", "erlkaf_broker_cli:main(init:get_plain_arguments())",
              "-extra" | Args ++ ["--stdin"]]}
    end,
    Holder = spawn(fun() ->
        Port = open_port({spawn_executable, Exe}, [{args, ExeArgs}, {line, 4096}, use_stdio, exit_status]),
        Self ! {Ref, read_bootstrap(Port)},
        receive stop -> port_close(Port) end
    end),
    receive
        {Ref, {ok, Bootstrap}} -> {ok, Holder, Bootstrap};
        {Ref, Error} -> Error
    after 300000 ->
        exit(Holder, kill),
        {error, broker_start_timeout}
    end.

read_bootstrap(Port) ->
    receive
        {Port, {data, {eol, "bootstrap_servers=" ++ B}}} -> {ok, list_to_binary(B)};
        {Port, {data, _}} -> read_bootstrap(Port);
        {Port, {exit_status, S}} -> {error, {broker_exited, S}}
    end.

%% bin/erlkaf-broker of the source tree this module was built from, if there is one.
script() ->
    script(filename:dirname(code:which(?MODULE))).
script("/") -> error;
script(Dir) ->
    Script = filename:join([Dir, "bin", "erlkaf-broker"]),
    case filelib:is_regular(Script) of
        true -> {ok, Script};
        false -> script(filename:dirname(Dir))
    end.

-spec main([string()]) -> no_return().
main(Args) ->
    case parse(Args, #{brokers => 1, partitions => 4, topics => [], stdin => false}) of
        {ok, Opts} ->
            run(Opts);
        {error, Msg} ->
            io:format(standard_error, "erlkaf-broker: ~ts~n~ts", [Msg, usage()]),
            erlang:halt(2)
    end.

usage() ->
    "usage: erlkaf-broker [--brokers N] [--partitions P] [--topic NAME]... [--stdin]\n"
    "  --brokers N      brokers in the cluster (default 1)\n"
    "  --partitions P   partitions of each --topic, and of auto-created topics' (default 4)\n"
    "  --topic NAME[:N] create NAME with N (default P) partitions (repeatable)\n"
    "  --stdin          exit when standard input closes\n".

parse([], Opts) -> {ok, Opts};
parse(["--brokers", N | Rest], Opts) -> int(brokers, N, Rest, Opts);
parse(["--partitions", N | Rest], Opts) -> int(partitions, N, Rest, Opts);
parse(["--topic", T | Rest], #{topics := Ts} = Opts) -> parse(Rest, Opts#{topics := Ts ++ [T]});
parse(["--stdin" | Rest], Opts) -> parse(Rest, Opts#{stdin := true});
parse(["--help" | _], _) -> io:format("~ts", [usage()]), erlang:halt(0);
parse([Other | _], _) -> {error, io_lib:format("unknown argument ~ts~n", [Other])}.

int(Key, S, Rest, Opts) ->
    case catch list_to_integer(S) of
        N when is_integer(N), N > 0 -> parse(Rest, Opts#{Key := N});
        _ -> {error, io_lib:format("--~s needs a positive integer, got ~ts~n", [Key, S])}
    end.

-spec run(map()) -> no_return().
run(#{brokers := B, partitions := P, topics := Topics, stdin := Stdin}) ->
    Replication = min(B, 3),
    case erlkaf_mock:start(#{brokers => B, topics => [topic(T, P, Replication) || T <- Topics]}) of
        {ok, Mock} ->
            io:format("bootstrap_servers=~ts~n", [erlkaf_mock:bootstrap_servers(Mock)]),
            case Stdin of
                true -> wait_stdin(), erlang:halt(0);
                false -> receive after infinity -> ok end
            end;
        {error, Reason} ->
            io:format(standard_error, "erlkaf-broker: cannot start: ~p~n", [Reason]),
            erlang:halt(1)
    end.

topic(Spec, P, Replication) ->
    case string:split(Spec, ":", trailing) of
        [Name, N] -> {list_to_binary(Name), list_to_integer(N), Replication};
        [Name] -> {list_to_binary(Name), P, Replication}
    end.

wait_stdin() ->
    case io:get_line(standard_io, "") of
        eof -> ok;
        {error, _} -> ok;
        _ -> wait_stdin()
    end.
