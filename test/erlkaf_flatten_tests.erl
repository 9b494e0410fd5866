-module(erlkaf_flatten_tests).
-include_lib("eunit/include/eunit.hrl").

every_form_test() ->
    ?assertEqual({ok, <<"ab">>}, erlkaf_flatten:message([<<"a">>, $b])),
    ?assertEqual({ok, {<<"k">>, <<"v">>}}, erlkaf_flatten:message({"k", [<<"v">>]})),
    ?assertEqual({ok, {undefined, <<"v">>}}, erlkaf_flatten:message({undefined, <<"v">>})),
    ?assertEqual({ok, {3, <<"k">>, <<"v">>, [{<<"h">>, <<"x">>}, {n, undefined}], 7}},
                 erlkaf_flatten:message({3, ["k"], "v", [{"h", [$x]}, {n, undefined}], 7})),
    ?assertEqual({ok, {5, -1, <<"k">>, undefined, #{<<"h">> => <<"y">>}, 0}},
                 erlkaf_flatten:message({5, -1, "k", undefined, #{"h" => ["y"]}, 0})),
    ?assertEqual({ok, #{value => <<"v">>, key => <<"k">>, partition => 2}},
                 erlkaf_flatten:message(#{value => ["v"], key => "k", partition => 2})),
    ?assertEqual({ok, #{timestamp => 1}}, erlkaf_flatten:message(#{timestamp => 1})).

what_is_not_iodata_is_named_test() ->
    ?assertEqual({error, value}, erlkaf_flatten:message([<<"a">> | improper])),
    ?assertEqual({error, key}, erlkaf_flatten:message({[foo], <<"v">>})),
    ?assertEqual({error, headers}, erlkaf_flatten:message({-1, undefined, <<"v">>, [{"h", [bar]}], 0})),
    ?assertEqual({error, headers}, erlkaf_flatten:message({-1, undefined, <<"v">>, [not_a_pair], 0})),
    ?assertEqual({error, headers}, erlkaf_flatten:message(#{headers => [{"h", "v"} | tail]})),
    ?assertEqual({error, message}, erlkaf_flatten:message(42)),
    ?assertEqual({error, message}, erlkaf_flatten:message({a, b, c})).
