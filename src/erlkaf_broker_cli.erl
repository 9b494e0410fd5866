%%% @doc `bin/erlkaf-broker': runs the embedded mock cluster in its own OS process so that
%%% any Kafka client (kcat, another VM, a benchmark) can use it. Prints
%%% `bootstrap_servers=HOST:PORT,...' on the first line, then serves until the VM is
%%% stopped (SIGTERM) or, with `--stdin', until standard input closes.
-module(erlkaf_broker_cli).

-export([main/1]).

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
    "  --topic NAME     create NAME with P partitions (repeatable)\n"
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

run(#{brokers := B, partitions := P, topics := Topics, stdin := Stdin}) ->
    Replication = min(B, 3),
    case erlkaf_mock:start(#{brokers => B, topics => [{list_to_binary(T), P, Replication} || T <- Topics]}) of
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

wait_stdin() ->
    case io:get_line(standard_io, "") of
        eof -> ok;
        {error, _} -> ok;
        _ -> wait_stdin()
    end.
