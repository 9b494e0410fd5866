%%% @doc The ordered disk spill of a producer (`queue_buffering_overflow_strategy' =
%%% `local_disk_queue'): messages librdkafka has no room for are appended to a file and
%%% produced from it, in order, when room frees up.
%%%
%%% Files, in `local_disk_queue_dir': `<client>.spill' holds records
%%% `<<Size:32, Crc:32, term_to_binary({Topic, MsgRef, Partition, Key, Value, Headers,
%%% Timestamp})/binary>>'; `<client>.spill.pos' holds the byte offset up to which records
%%% were handed to librdkafka (written after each drained chunk, by rename). A VM that
%%% stops with records pending replays them when the client with that id starts again;
%%% a chunk handed to librdkafka but not yet recorded in `.pos' is produced again (at
%%% least once). A torn record at the end (a crash mid-append) is ignored. The data is
%%% not fsynced: it survives a VM restart, not a power loss.
-module(erlkaf_spill).

-export([open/3, append/2, read/2, commit/2, drained/1, pending/1, close/1, files/2]).

-record(spill, {
    path :: file:filename(),
    fd :: file:io_device(),
    size :: non_neg_integer(),   % bytes in the file
    pos :: non_neg_integer(),    % bytes handed to librdkafka
    max :: pos_integer()
}).

-opaque spill() :: #spill{}.
-type record() :: {binary(), erlkaf:msg_ref(), integer(), term(), term(), term(), non_neg_integer()}.
-export_type([spill/0, record/0]).

%% @doc The spill file and position file of a client.
-spec files(file:filename(), term()) -> {file:filename(), file:filename()}.
files(Dir, ClientId) ->
    Base = filename:join(Dir, io_lib:format("~ts.spill", [name(ClientId)])),
    {lists:flatten(Base), lists:flatten(Base) ++ ".pos"}.

name(A) when is_atom(A) -> atom_to_list(A);
name(B) when is_binary(B) -> binary_to_list(B);
name(T) -> io_lib:format("~p", [T]).

%% @doc Opens (or creates) a client's spill; what a previous VM left is pending.
-spec open(file:filename(), term(), pos_integer()) -> {ok, spill()} | {error, term()}.
open(Dir, ClientId, MaxBytes) ->
    {Path, PosPath} = files(Dir, ClientId),
    case filelib:ensure_dir(Path) of
        ok ->
            Pos = case file:read_file(PosPath) of
                {ok, <<P:64>>} -> P;
                _ -> 0
            end,
            case file:open(Path, [read, append, raw, binary]) of
                {ok, Fd} ->
                    Size = valid_size(Fd, filelib:file_size(Path)),
                    {ok, #spill{path = Path, fd = Fd, size = Size, pos = min(Pos, Size), max = MaxBytes}};
                {error, Reason} ->
                    {error, {local_disk_queue, Path, Reason}}
            end;
        {error, Reason} ->
            {error, {local_disk_queue, Dir, Reason}}
    end.

%% The length of the file's whole, intact records (a torn last record is cut off).
valid_size(Fd, Size) ->
    valid_size(Fd, 0, Size).
valid_size(Fd, At, Size) ->
    case file:pread(Fd, At, 8) of
        {ok, <<Len:32, Crc:32>>} when At + 8 + Len =< Size ->
            case file:pread(Fd, At + 8, Len) of
                {ok, Bin} when byte_size(Bin) =:= Len ->
                    case erlang:crc32(Bin) of
                        Crc -> valid_size(Fd, At + 8 + Len, Size);
                        _ -> truncate(Fd, At)
                    end;
                _ -> truncate(Fd, At)
            end;
        eof -> At;
        _ -> truncate(Fd, At)
    end.

truncate(Fd, At) ->
    {ok, _} = file:position(Fd, At),
    ok = file:truncate(Fd),
    At.

%% @doc Appends records behind what is pending, as many as fit under the size limit;
%% returns how many were written (the rest: `local_disk_queue_full').
-spec append(spill(), [record()]) -> {ok, spill(), non_neg_integer()} | {error, term()}.
append(#spill{fd = Fd, size = Size, max = Max} = S, Records) ->
    {Data, Len, N} = fit(Records, Max - Size, [], 0, 0),
    case file:write(Fd, lists:reverse(Data)) of
        ok -> {ok, S#spill{size = Size + Len}, N};
        {error, _} = E -> E
    end.

fit([], _Room, Acc, Len, N) ->
    {Acc, Len, N};
fit([R | Rest], Room, Acc, Len, N) ->
    B = term_to_binary(R),
    L = 8 + byte_size(B),
    case Len + L > Room of
        true -> {Acc, Len, N};
        false -> fit(Rest, Room, [[<<(byte_size(B)):32, (erlang:crc32(B)):32>>, B] | Acc], Len + L, N + 1)
    end.

%% @doc Up to N pending records from the read position, each with the position after it.
-spec read(spill(), pos_integer()) -> [{record(), non_neg_integer()}].
read(#spill{fd = Fd, pos = Pos, size = Size}, N) ->
    read(Fd, Pos, Size, N, []).

read(_Fd, At, Size, N, Acc) when At >= Size; N =:= 0 ->
    lists:reverse(Acc);
read(Fd, At, Size, N, Acc) ->
    {ok, <<Len:32, _Crc:32>>} = file:pread(Fd, At, 8),
    {ok, Bin} = file:pread(Fd, At + 8, Len),
    Next = At + 8 + Len,
    read(Fd, Next, Size, N - 1, [{binary_to_term(Bin), Next} | Acc]).

%% @doc Records up to `Pos' were handed to librdkafka. When the file is drained it is
%% emptied (both files truncated), so that it does not grow forever.
-spec commit(spill(), non_neg_integer()) -> spill().
commit(#spill{fd = Fd, path = Path, size = Size} = S, Pos) when Pos >= Size ->
    truncate(Fd, 0),
    _ = file:delete(Path ++ ".pos"),
    S#spill{size = 0, pos = 0};
commit(#spill{path = Path} = S, Pos) ->
    Tmp = Path ++ ".pos.tmp",
    ok = file:write_file(Tmp, <<Pos:64>>),
    ok = file:rename(Tmp, Path ++ ".pos"),
    S#spill{pos = Pos}.

%% @doc Everything was handed to librdkafka: the files are emptied.
-spec drained(spill()) -> spill().
drained(#spill{size = Size} = S) ->
    commit(S, Size).

%% @doc Bytes not yet handed to librdkafka (0: empty).
-spec pending(spill()) -> non_neg_integer().
pending(#spill{size = Size, pos = Pos}) ->
    Size - Pos.

%% @doc Closes the file (what is pending stays for the next start).
-spec close(spill()) -> ok.
close(#spill{fd = Fd}) ->
    _ = file:close(Fd),
    ok.
