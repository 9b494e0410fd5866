%%% A consumer callback module for the suites: reports every call to a test process and
%%% fails, crashes or stops on request. Args: #{pid := Pid, tag := Tag} plus optional
%%% `fail_once' (offsets whose first call returns an error), `crash_worker_once' (offsets
%%% whose first call kills the worker process), `stop_at' (offset that stops the worker),
%%% `always_fail' (true: every call fails), `hold_at' (offset whose first call blocks until
%%% the worker is killed), `restart_delay_ms' (a partition's second and later init/4 sleep
%%% that long: a replaced worker registers late), `init_delay_ms' (every init/4 sleeps that
%%% long), `init_fail' (partitions whose init/4 returns an error).
-module(erlkaf_test_handler).
-behaviour(erlkaf_consumer).

-include("erlkaf.hrl").

-export([init/4, handle_message/2, handle_failed_message/2]).

init(Topic, Partition, Offset, Args) ->
    maps:get(pid, Args) ! {init, maps:get(tag, Args), Topic, Partition, Offset, self()},
    case first_time({maps:get(tag, Args), init, Topic, Partition}) of
        true -> ok;
        false -> timer:sleep(maps:get(restart_delay_ms, Args, 0))
    end,
    timer:sleep(maps:get(init_delay_ms, Args, 0)),
    case lists:member(Partition, maps:get(init_fail, Args, [])) of
        true -> {error, planned_init_failure};
        false -> {ok, Args}
    end.

handle_message(Msgs, #{pid := Pid, tag := Tag} = S) when is_list(Msgs) ->
    Pid ! {batch, Tag, [{T, P, O, V} || #erlkaf_msg{topic = T, partition = P, offset = O, value = V} <- Msgs]},
    {ok, S};
handle_message(#erlkaf_msg{topic = T, partition = P, offset = O, value = V}, #{pid := Pid, tag := Tag} = S) ->
    First = first_time({Tag, T, P, O}),
    case S of
        #{always_fail := true} ->
            Pid ! {failed, Tag, T, P, O},
            {error, always, S};
        #{stop_at := O} ->
            Pid ! {stopping, Tag, T, P, O},
            {stop, asked, S};
        #{hold_at := O} when First ->
            Pid ! {holding, Tag, T, P, O, self()},
            receive after infinity -> ok end;
        _ ->
            case {First, lists:member(O, maps:get(fail_once, S, [])), lists:member(O, maps:get(crash_worker_once, S, []))} of
                {true, true, _} ->
                    Pid ! {failed, Tag, T, P, O},
                    error(planned_failure);
                {true, _, true} ->
                    Pid ! {crashing, Tag, T, P, O},
                    exit(self(), kill);
                _ ->
                    Pid ! {handled, Tag, T, P, O, V},
                    {ok, S}
            end
    end.

handle_failed_message(#erlkaf_msg{topic = T, partition = P, offset = O}, #{pid := Pid, tag := Tag} = S) ->
    Pid ! {dead_letter, Tag, T, P, O},
    {ok, S}.

first_time(Key) ->
    case persistent_term:get({?MODULE, Key}, false) of
        false -> persistent_term:put({?MODULE, Key}, true), true;
        true -> false
    end.
