%%% @doc The process of one consumer group client. It owns the native consumer, starts a
%%% partition worker (`erlkaf_partition_worker') for each assigned partition, stops the
%%% workers of revoked partitions before telling the pump it may unassign, restarts a
%%% worker that crashed (its unfinished messages are fetched again), and on stop lets every
%%% worker finish its handler call, commits and leaves the group.
-module(erlkaf_group_server).
-behaviour(gen_server).

-export([start_link/2, child_spec/2]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-record(state, {
    client_id :: term(),
    res :: reference(),
    settings :: #{binary() => map()},
    workers = #{} :: #{{binary(), non_neg_integer()} => pid()},
    offsets = #{} :: #{{binary(), non_neg_integer()} => integer()},
    stop_timeout :: non_neg_integer(),
    callbacks :: erlkaf_events:callbacks(),
    last_stats = #{} :: map() | binary()
}).

%% @doc Child spec for `erlkaf_clients_sup'.
-spec child_spec(term(), map()) -> supervisor:child_spec().
child_spec(ClientId, Config) ->
    #{id => ClientId,
      %% Hidden in a fun: supervisor reports print the start arguments (secrets in props).
      start => {?MODULE, start_link, [ClientId, erlkaf_config:hide(Config)]},
      restart => transient,
      shutdown => maps:get(stop_timeout_ms, Config) + 60000,
      type => worker}.

-spec start_link(term(), map() | fun(() -> map())) -> gen_server:start_ret().
start_link(ClientId, Config) ->
    gen_server:start_link(?MODULE, {ClientId, Config}, []).

init({ClientId, Hidden}) ->
    #{props := Props, topics := Topics} = Config = erlkaf_config:reveal(Hidden),
    _ = erlkaf_telemetry:refresh(),
    process_flag(trap_exit, true),
    Name = case ClientId of
        B when is_binary(B) -> B;
        A when is_atom(A) -> atom_to_binary(A, utf8);
        Other -> iolist_to_binary(io_lib:format("~p", [Other]))
    end,
    TopicNames = maps:keys(Topics),
    case erlkaf_nif:consumer_new(Name, Props, TopicNames, self(),
                                 {maps:get(max_inflight_batches, Config),
                                  maps:get(max_inflight_bytes, Config)},
                                 maps:get(revoke_timeout_ms, Config)) of
        {ok, Res} ->
            case erlkaf_registry:register(ClientId, consumer, Res, #{}) of
                ok ->
                    {ok, #state{client_id = ClientId, res = Res, settings = Topics,
                                stop_timeout = maps:get(stop_timeout_ms, Config),
                                callbacks = maps:get(callbacks, Config)}};
                {error, Reason} ->
                    erlkaf_nif:consumer_stop(Res),
                    {stop, Reason}
            end;
        {error, Reason} ->
            {stop, Reason}
    end.

handle_call(assignment, _From, #state{res = Res} = S) ->
    {reply, erlkaf_nif:consumer_assignment(Res), S};
handle_call(get_stats, _From, #state{last_stats = Stats} = S) ->
    {reply, {ok, Stats}, S};
handle_call(_Other, _From, S) ->
    {reply, {error, unknown_call}, S}.

handle_cast(_Msg, S) ->
    {noreply, S}.

handle_info({erlkaf_assigned, Parts}, S) ->
    rebalance_event(assigned, [{T, P} || {T, P, _} <- Parts], S),
    {noreply, lists:foldl(fun({T, P, O}, Acc) -> start_worker(T, P, O, Acc) end, S, Parts)};
handle_info({erlkaf_revoked, Generation, Parts}, #state{res = Res} = S) ->
    rebalance_event(revoked, [{T, P} || {T, P, _} <- Parts], S),
    S1 = stop_workers([{T, P} || {T, P, _} <- Parts], S),
    erlkaf_nif:consumer_revoke_done(Res, Generation),
    {noreply, S1};
handle_info({'EXIT', Pid, Reason}, #state{workers = Ws} = S) ->
    case [K || {K, P} <- maps:to_list(Ws), P =:= Pid] of
        [{T, P} = K] ->
            S1 = S#state{workers = maps:remove(K, Ws)},
            case Reason of
                {handler_stop, Why} ->
                    {noreply, pause_partition(notice, "handler stopped ~ts/~p: ~p", T, P, Why, S1)};
                {shutdown, {init_failed, Why}} ->
                    %% Not restarted: the same init/4 would fail again at once.
                    {noreply, pause_partition(error, "init of ~ts/~p failed: ~p", T, P, Why, S1)};
                normal ->
                    {noreply, S1};
                _ ->
                    logger:error("erlkaf ~p: worker of ~ts/~p crashed: ~p; restarting it",
                                 [S#state.client_id, T, P, Reason], #{domain => [erlkaf]}),
                    {noreply, start_worker(T, P, maps:get(K, S#state.offsets, -1001), S1)}
            end;
        [] ->
            case Reason of
                normal -> {noreply, S};
                _ -> {stop, Reason, S}
            end
    end;
handle_info({erlkaf_event, Event}, #state{client_id = ClientId, callbacks = Callbacks} = S) ->
    case {erlkaf_events:handle(Event, ClientId, Callbacks), Event} of
        {{stats, Stats}, _} -> {noreply, S#state{last_stats = Stats}};
        {{oauth_refresh, Config}, _} ->
            erlkaf_events:oauth_refresh(S#state.res, Config, maps:get(oauthbearer_token_refresh_callback, Callbacks, undefined), ClientId),
            {noreply, S};
        %% Fatal (e.g. fenced by a static member with the same group.instance.id): stop.
        {ok, {error, Code, true, Reason}} -> {stop, {shutdown, {fatal_error, Code, Reason}}, S};
        {ok, _} -> {noreply, S}
    end;
handle_info(_Other, S) ->
    {noreply, S}.

%% A partition whose worker ended for good: paused until the next rebalance, and logged.
pause_partition(Level, What, T, P, Why, #state{client_id = ClientId, res = Res} = S) ->
    logger:log(Level, "erlkaf ~p: " ++ What ++ "; partition paused until the next rebalance",
               [ClientId, T, P, Why], #{domain => [erlkaf]}),
    erlkaf_nif:consumer_pause(Res, T, P, true),
    S.

rebalance_event(Kind, Parts, #state{client_id = ClientId}) ->
    erlkaf_telemetry:execute([erlkaf, rebalance], #{count => length(Parts)},
                             #{client_id => ClientId, kind => Kind, partitions => Parts}).

terminate(_Reason, #state{client_id = ClientId, res = Res, workers = Ws} = S) ->
    erlkaf_registry:unregister(ClientId),
    _ = stop_workers(maps:keys(Ws), S),
    erlkaf_nif:consumer_stop(Res),
    receive {erlkaf_stopped, _} -> ok
    after S#state.stop_timeout + 30000 ->
        logger:error("erlkaf consumer ~p did not stop in time", [ClientId])
    end.

%% The worker runs init/4 on its own: the group process goes on serving rebalances, and
%% the partitions' init/4 calls run side by side.
start_worker(T, P, Offset, #state{res = Res, settings = Settings, workers = Ws} = S) ->
    Topic = maps:get(T, Settings),
    {ok, Pid} = erlkaf_partition_worker:start_link(Res, T, P, Offset, Topic#{client_id => S#state.client_id}),
    S#state{workers = Ws#{{T, P} => Pid}, offsets = (S#state.offsets)#{{T, P} => Offset}}.

%% Asks the workers to stop after their current handler call and waits for them (each
%% stores what it finished); kills those still busy after `stop_timeout_ms'.
stop_workers(Keys, #state{workers = Ws} = S) ->
    Pids = [P || K <- Keys, {ok, P} <- [maps:find(K, Ws)]],
    Tag = make_ref(),
    [erlkaf_partition_worker:stop(P, Tag) || P <- Pids],
    Deadline = erlang:monotonic_time(millisecond) + S#state.stop_timeout,
    [wait_worker(P, Tag, Deadline) || P <- Pids],
    S#state{workers = maps:without(Keys, Ws), offsets = maps:without(Keys, S#state.offsets)}.

wait_worker(Pid, Tag, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {erlkaf_worker_stopped, Tag, Pid} ->
            receive {'EXIT', Pid, _} -> ok after Left -> ok end;
        {'EXIT', Pid, _} ->
            ok
    after Left ->
        logger:error("erlkaf: partition worker ~p did not stop in time; killed", [Pid]),
        unlink(Pid),
        exit(Pid, kill)
    end.

