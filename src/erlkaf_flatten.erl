%%% @private
%%% @doc Flattens the iolists of one message to be produced (value, key, header names and
%%% values) into binaries, in Erlang. The NIF flattens short iolists itself; one too long
%%% to copy on a scheduler within a fraction of a millisecond comes back as
%%% `{flatten, Refs, [Msg | Rest]}', and `iolist_to_binary/1' (a BIF that yields to other
%%% processes while it copies) does it here. A binary is then handed to librdkafka without
%%% a second copy.
-module(erlkaf_flatten).

-export([message/1]).

%% @doc The message with its iolists made binaries, in the same form; `{error, Part}'
%% (`value', `key', `headers' or `message') when a part is not iodata or the message is
%% none of the forms `erlkaf:produce_batch/3' takes.
%%
%% ```
%% {ok, {<<"k">>, <<"ab">>}} = erlkaf_flatten:message({["k"], [<<"a">>, $b]}).
%% '''
-spec message(term()) -> {ok, term()} | {error, value | key | headers | message}.
message(V) when is_list(V) -> parts([{value, V}], fun([V1]) -> V1 end);
message({K, V}) -> parts([{key, K}, {value, V}], fun([K1, V1]) -> {K1, V1} end);
message({P, K, V, H, Ts}) ->
    parts([{key, K}, {value, V}, {headers, H}], fun([K1, V1, H1]) -> {P, K1, V1, H1, Ts} end);
message({Ref, P, K, V, H, Ts}) ->
    parts([{key, K}, {value, V}, {headers, H}], fun([K1, V1, H1]) -> {Ref, P, K1, V1, H1, Ts} end);
message(#{} = M) ->
    Present = [{F, maps:get(F, M)} || F <- [key, value, headers], is_map_key(F, M)],
    parts(Present, fun(Flat) -> maps:merge(M, maps:from_list(lists:zip([F || {F, _} <- Present], Flat))) end);
message(_) ->
    {error, message}.

parts(Parts, Build) ->
    try {ok, Build([part(Name, X) || {Name, X} <- Parts])}
    catch throw:{bad, Name} -> {error, Name}
    end.

part(headers, H) when is_list(H) ->
    [header(KV) || KV <- proper(H)];
part(headers, H) when is_map(H) ->
    maps:from_list([header(KV) || KV <- maps:to_list(H)]);
part(headers, H) ->
    H;
part(Name, X) ->
    flat(Name, X).

header({K, V}) -> {flat(headers, K), flat(headers, V)};
header(_) -> throw({bad, headers}).

flat(Name, X) when is_list(X) ->
    try iolist_to_binary(X)
    catch error:badarg -> throw({bad, Name})
    end;
flat(_Name, X) ->
    X.

proper(L) ->
    try length(L) of
        _ -> L
    catch error:badarg -> throw({bad, headers})
    end.
