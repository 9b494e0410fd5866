%%% @doc The process of one assigned partition. It receives batches of messages pushed by
%%% the consumer's pump (one Erlang message per batch), calls the handler in offset order,
%%% retries failures with backoff, stores the offset after success (the NIF ack also
%%% returns the partition's flow-control credit), and stops cleanly between two handler
%%% calls when its group asks (revoke, stop): what it finished is stored, the rest is
%%% fetched again by whoever gets the partition next.
-module(erlkaf_partition_worker).

-include("erlkaf.hrl").

-export([start_link/5, stop/2]).
-export([init/5]).

%% Erlkaf.Message is Elixir (lib/), compiled only by mix.
-dialyzer({nowarn_function, convert/2}).

-record(w, {
    res :: reference(),
    topic :: binary(),
    partition :: non_neg_integer(),
    module :: module(),
    state :: term(),
    dispatch :: one_by_one | {batch, pos_integer()},
    %% Seeks seen: batches of an older epoch were fetched before a seek and are dropped.
    epoch = 0 :: non_neg_integer(),
    max_retries :: non_neg_integer() | infinity,
    %% Elixir handlers (`use Erlkaf.Consumer') get `%Erlkaf.Message{}' structs.
    structs = false :: boolean(),
    client_id :: term()
}).

%% @doc Starts (and links) the worker; returns at once. The worker runs the handler's
%% `init/4' on its own (a slow `init/4' holds neither the group process nor the other
%% partitions' workers), then registers for its partition's batches. When `init/4' fails
%% it exits with `{shutdown, {init_failed, Result}}'; a stop asked meanwhile is answered
%% once `init/4' returned, without registering.
-spec start_link(reference(), binary(), non_neg_integer(), integer(), map()) -> {ok, pid()}.
start_link(Res, Topic, Partition, Offset, Settings) ->
    {ok, proc_lib:spawn_link(?MODULE, init, [Res, Topic, Partition, Offset, Settings])}.

%% @doc Asks the worker to stop after the handler call in progress; `Tag' comes back as
%% `{erlkaf_worker_stopped, Tag, Pid}' once its offsets are stored.
-spec stop(pid(), term()) -> ok.
stop(Pid, Tag) ->
    Pid ! {erlkaf_stop, self(), Tag},
    ok.

%% @private
init(Res, Topic, Partition, Offset, Settings) ->
    #{callback_module := Mod, callback_args := Args} = Settings,
    case catch Mod:init(Topic, Partition, Offset, Args) of
        {ok, State} ->
            %% Revoked or stopped while init/4 ran: nothing was handled, nothing to store.
            receive {erlkaf_stop, From, Tag} -> stopped(From, Tag)
            after 0 -> ok
            end,
            case erlkaf_nif:consumer_register(Res, Topic, Partition, self()) of
                ok -> ok;
                %% Revoked between the check above and now: the stop request follows.
                {error, unknown_partition} -> exit(normal)
            end,
            loop(#w{res = Res, topic = Topic, partition = Partition, module = Mod, state = State,
                    dispatch = maps:get(dispatch_mode, Settings, one_by_one),
                    max_retries = maps:get(max_retries, Settings, infinity),
                    structs = erlang:function_exported(Mod, '__erlkaf_structs__', 0),
                    client_id = maps:get(client_id, Settings, undefined)});
        Other ->
            exit({shutdown, {init_failed, Other}})
    end.

loop(#w{epoch = Current} = W) ->
    receive
        {erlkaf_batch, Epoch, Msgs} when Epoch >= Current ->
            %% A seek marker already in the mailbox makes this batch stale.
            receive
                {erlkaf_epoch, Newer} when Newer > Epoch -> loop(W#w{epoch = Newer})
            after 0 ->
                W1 = batch(Msgs, W#w{epoch = Epoch}),
                collect_garbage(Msgs),
                loop(W1)
            end;
        {erlkaf_batch, _Stale, _Msgs} ->
            loop(W);
        {erlkaf_epoch, Epoch} ->
            loop(W#w{epoch = max(Epoch, Current)});
        {erlkaf_stop, From, Tag} ->
            stopped(From, Tag)
    end.

%% A large batch's messages are garbage once handled: collected now, their values (shared
%% binaries) are freed now rather than when the process next needs room. With slow
%% handlers on 64 partitions that held 15-30 MiB more (the bench's slow-handler figure:
%% RSS +94 MiB instead of +107-127); consumer throughput unchanged (alternating runs,
%% batch and one_by_one dispatch).
collect_garbage(Msgs) ->
    case length(Msgs) >= 128 of
        true -> erlang:garbage_collect();
        false -> ok
    end.

%% Answers a stop request (offsets are stored by then) and ends the worker.
-spec stopped(pid(), term()) -> no_return().
stopped(From, Tag) ->
    From ! {erlkaf_worker_stopped, Tag, self()},
    exit(normal).

%% Runs a pushed batch through the handler, then acks it.
batch(Msgs, #w{dispatch = one_by_one} = W) ->
    handle_each(Msgs, W);
batch(Msgs, #w{dispatch = {batch, N}} = W) ->
    handle_chunks(Msgs, N, W).

handle_each([], W) ->
    W;
handle_each([M | Rest], W) ->
    W1 = handle(M, M, W),
    check_stop(M, Rest =:= [], W1),
    handle_each(Rest, W1).

handle_chunks([], _N, W) ->
    W;
handle_chunks(Msgs, N, W) ->
    {Chunk, Rest} = split(N, Msgs),
    Last = lists:last(Chunk),
    W1 = handle(Chunk, Last, W),
    check_stop(Last, Rest =:= [], W1),
    handle_chunks(Rest, N, W1).

split(N, L) when length(L) =< N -> {L, []};
split(N, L) -> lists:split(N, L).

%% After each handler call: store the offset when the batch is done (one ack per pushed
%% batch: it returns the partition's credit), and honour a stop request at once (storing
%% what was processed).
check_stop(#erlkaf_msg{offset = O}, BatchDone, W) ->
    receive
        {erlkaf_stop, From, Tag} ->
            ack(O, W),
            stopped(From, Tag)
    after 0 ->
        case BatchDone of
            true -> ack(O, W);
            false -> ok
        end
    end.

ack(Offset, #w{res = Res, topic = T, partition = P}) ->
    _ = erlkaf_nif:consumer_ack(Res, T, P, Offset + 1),
    ok.

handle(Input, Last, W) ->
    handle(Input, Last, W, 0).

handle(Input, Last, #w{module = Mod, state = S} = W, Attempt) ->
    Telemetry = erlkaf_telemetry:enabled(),
    T0 = case Telemetry of true -> erlang:monotonic_time(); false -> 0 end,
    Result = try Mod:handle_message(convert(Input, W), S)
             catch Class:Error:Stack -> {error, {Class, Error, Stack}, S}
             end,
    Telemetry andalso consume_event(Input, Result, erlang:monotonic_time() - T0, W),
    case Result of
        {ok, S1} ->
            W#w{state = S1};
        {stop, Reason, _S1} ->
            %% Everything before this message is done: store up to it, not past it.
            ack(first_offset(Input) - 1, W),
            exit({handler_stop, Reason});
        {error, Reason, S1} ->
            retry(Input, Last, W#w{state = S1}, Attempt, Reason);
        Other ->
            retry(Input, Last, W, Attempt, {bad_return, Other})
    end.

consume_event(Input, Result, Duration, #w{client_id = C, topic = T, partition = P}) ->
    Count = case Input of L when is_list(L) -> length(L); _ -> 1 end,
    erlkaf_telemetry:execute([erlkaf, consume, batch], #{count => Count, duration => Duration},
                             #{client_id => C, topic => T, partition => P, result => element(1, Result)}),
    true.

convert(Input, #w{structs = false}) -> Input;
convert(Msgs, #w{structs = true}) when is_list(Msgs) -> ['Elixir.Erlkaf.Message':from_record(M) || M <- Msgs];
convert(Msg, #w{structs = true}) -> 'Elixir.Erlkaf.Message':from_record(Msg).

first_offset([#erlkaf_msg{offset = O} | _]) -> O;
first_offset(#erlkaf_msg{offset = O}) -> O.

retry(Input, Last, #w{max_retries = Max} = W, Attempt, Reason) when Max =:= infinity; Attempt < Max ->
    Backoff = min(100 bsl min(Attempt, 6), 5000),
    logger:warning("erlkaf ~ts/~p offset ~p: handler failed (~p), retry ~p in ~p ms",
                   [W#w.topic, W#w.partition, Last#erlkaf_msg.offset, Reason, Attempt + 1, Backoff],
                   #{domain => [erlkaf]}),
    receive
        {erlkaf_stop, From, Tag} ->
            stopped(From, Tag)
    after Backoff ->
        handle(Input, Last, W, Attempt + 1)
    end;
retry(Input, _Last, #w{module = Mod, state = S} = W, _Attempt, Reason) ->
    logger:error("erlkaf ~ts/~p: giving up after ~p retries (~p)",
                 [W#w.topic, W#w.partition, W#w.max_retries, Reason], #{domain => [erlkaf]}),
    case erlang:function_exported(Mod, handle_failed_message, 2) of
        true ->
            try Mod:handle_failed_message(convert(Input, W), S) of
                {ok, S1} -> W#w{state = S1};
                _ -> W
            catch _:_ -> W
            end;
        false ->
            W
    end.
